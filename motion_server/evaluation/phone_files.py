"""Read phone timings that come with recordings: pocketsphinx JSON and Praat TextGrid (MFA output).

Both are turned into ``Phone`` lists in ARPAbet without stress digits; silences and noise markers
become ``SIL``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from motion_server.phones import SIL, Phone, arpabet_symbols


class PhoneFileError(ValueError):
    pass


def _norm(symbol: str) -> str:
    s = re.sub(r"\d", "", symbol.strip().upper())
    return s if s in _known() else SIL


def _known() -> frozenset[str]:
    return frozenset(arpabet_symbols())


def load_pocketsphinx_json(path: str | Path) -> list[Phone]:
    """pocketsphinx ``-phone_align`` JSON: nested ``w`` lists (words, then phones) with ``b`` begin and
    ``d`` duration in seconds, ``t`` the label."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PhoneFileError(f"cannot read pocketsphinx alignment {path}: {exc}") from exc
    out: list[Phone] = []
    for word in data.get("w", []):
        label = re.sub(r"\(\d+\)$", "", str(word.get("t", "")))
        for ph in word.get("w", []) or [word]:
            b, d = float(ph["b"]), float(ph["d"])
            out.append(Phone(_norm(str(ph["t"])), b, b + d, None, None if label.startswith("<") else label))
    if not out:
        raise PhoneFileError(f"{path} holds no phones (expected pocketsphinx word/phone JSON)")
    return out


_TOKEN = re.compile(r'"((?:[^"]|"")*)"|(-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)')


def load_textgrid(path: str | Path, tier: str = "phones") -> list[Phone]:
    """Praat TextGrid (long or short text format); returns the intervals of ``tier`` (empty labels = SIL)."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PhoneFileError(f"cannot read TextGrid {path}: {exc}") from exc
    # Long format: drop the bracketed item/interval headers so only values remain, in the short order.
    text = re.sub(r"\w+ \[\d*\]:?", " ", text)
    toks: list[str | float] = []
    for m in _TOKEN.finditer(text):
        toks.append(m.group(1).replace('""', '"') if m.group(1) is not None else float(m.group(2)))
    try:
        i = toks.index("TextGrid") + 1
        i += 2  # xmin xmax
        n_tiers = int(toks[i])
        i += 1
        for _ in range(n_tiers):
            kind, name = toks[i], toks[i + 1]
            n = int(toks[i + 4])
            i += 5
            items = toks[i:i + 3 * n] if kind == "IntervalTier" else toks[i:i + 2 * n]
            i += len(items)
            if kind == "IntervalTier" and str(name).lower() == tier:
                return [Phone(_norm(str(items[k + 2])) if items[k + 2] else SIL, float(items[k]), float(items[k + 1]))
                        for k in range(0, len(items), 3)]
    except (ValueError, IndexError, TypeError) as exc:
        raise PhoneFileError(f"cannot parse TextGrid {path}: {exc}") from exc
    raise PhoneFileError(f"TextGrid {path} has no interval tier named {tier!r}")


def load_phone_file(path: str | Path) -> list[Phone]:
    p = Path(path)
    if p.suffix.lower() == ".textgrid":
        return load_textgrid(p)
    if p.name.endswith(".phone.json"):
        return load_pocketsphinx_json(p)
    if p.suffix.lower() == ".json":
        from motion_server.phones import load_phones

        return load_phones(p)
    raise PhoneFileError(f"unknown phone file type {p.name}; expected .TextGrid, .phone.json or talkrig phones .json")
