"""A batch manifest: one row per line of dialogue, each with its own settings.

A pipeline hands `talkrig animate` a CSV (header row) or JSON file instead of audio files. Columns:

    audio       the recording (required)
    transcript  what is said (text); empty: a <stem>.txt beside the audio, else recognised
    style       a preset ('happy', 'sad:2', 'predicted') or a motion file used as style reference
    language    the language spoken ('en', 'de', 'ja', ...; default: --language, else checked per line):
                a line in a language without a phone aligner (all but English) is neither recognised
                nor aligned, which also saves the recogniser's time
    character   the .blend/.glb/.gltf/.fbx to key (default: --character, else the demo head)
    out         this line's output file (default: from --out)
    render      this line's preview .mp4 (default: from --render)

Relative paths are read from the manifest's folder, so a manifest travels with its audio.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from motion_server.options import option

MANIFEST_SUFFIXES = (".csv", ".json")
COLUMNS = ("audio", "transcript", "style", "language", "character", "out", "render")
_PATH_COLUMNS = ("audio", "character", "out", "render")


class ManifestError(ValueError):
    """A manifest that cannot be read; the message names the file, the row and the fix."""


@dataclass(frozen=True)
class Line:
    """One row of a manifest. ``None`` means "not given here": the command line's setting applies."""

    audio: Path
    transcript: str | None = None
    style: str | None = None
    language: str | None = None
    character: Path | None = None
    out: Path | None = None
    render: Path | None = None


def is_manifest(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix.lower() in MANIFEST_SUFFIXES and p.is_file()


def read_manifest(path: str | Path) -> list[Line]:
    """Every line of a CSV or JSON manifest, paths resolved against the manifest's folder."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest {p}: {exc}") from None
    rows = _json_rows(p, text) if p.suffix.lower() == ".json" else _csv_rows(p, text)
    if not rows:
        raise ManifestError(f"manifest {p} has no lines; add one row per audio file (column 'audio')")
    return [_line(p, n, row) for n, row in rows]


def _csv_rows(p: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    _check_columns(p, header)
    reader.fieldnames = header
    # row numbers as a spreadsheet shows them (the header is row 1)
    return [(n, row) for n, row in enumerate(reader, start=2) if any((v or "").strip() for v in row.values())]


def _json_rows(p: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {p} is not valid JSON: {exc}") from None
    if isinstance(data, dict):
        data = data.get("lines")
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ManifestError(f"manifest {p}: write a JSON list of objects (or {{\"lines\": [...]}}), "
                            "each with at least \"audio\"")
    for r in data:
        _check_columns(p, [str(k).lower() for k in r])
    return [(n, {str(k).lower(): v for k, v in r.items()}) for n, r in enumerate(data, start=1)]


def _check_columns(p: Path, names: list[str]) -> None:
    if "audio" not in names:
        raise ManifestError(f"manifest {p}: no 'audio' column; name each line's recording in it")
    unknown = [n for n in names if n not in COLUMNS]
    if unknown:
        raise ManifestError(f"manifest {p}: unknown column(s) {', '.join(map(repr, unknown))}; "
                            f"the columns are {', '.join(COLUMNS)}")


def _line(p: Path, n: int, row: dict[str, Any]) -> Line:
    where = f"manifest {p}, line {n}"
    values: dict[str, Any] = {}
    for col in COLUMNS:
        v = row.get(col)
        if v is None:
            continue
        if not isinstance(v, str):
            raise ManifestError(f"{where}: {col} must be text, not {type(v).__name__}")
        v = v.strip()
        if not v:
            continue
        if col == "language":
            opt = option("language")
            v = opt.normalize(v) if opt.normalize else v  # what the --language flag accepts, the cell accepts
            try:
                opt.check(v)
            except ValueError as exc:
                raise ManifestError(f"{where}: {exc}") from None
        values[col] = (p.parent / v) if col in _PATH_COLUMNS and not Path(v).is_absolute() else v
        if col in _PATH_COLUMNS:
            values[col] = Path(values[col])
    if "audio" not in values:
        raise ManifestError(f"{where}: the audio cell is empty; name the recording or delete the line")
    return Line(**values)
