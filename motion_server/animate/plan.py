"""Which files `talkrig animate` reads and writes: input expansion, output naming, overwrite checks.

Pure path logic (no audio, no torch, no bpy) so every rule here is cheap to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .manifest import Line, ManifestError, is_manifest, read_manifest

AUDIO_SUFFIXES = frozenset(
    {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".wma", ".webm",
     ".mp4", ".mkv", ".mov"}
)
# Written in the talkrig process by rig_mapping.formats.
MOTION_SUFFIXES = (".npz", ".csv", ".json")
# Written by the Blender job (character + keyed Action).
SCENE_SUFFIXES = (".glb", ".gltf", ".fbx", ".blend")
CHARACTER_SUFFIXES = (".blend", ".glb", ".gltf", ".fbx")
DEFAULT_OUT_DIR = Path("talkrig_out")
DEFAULT_SUFFIX = ".glb"
RENDER_NEXT_TO_OUT = "auto"  # --render given without a path


class PlanError(ValueError):
    """Arguments that cannot work for any input; the message says how to fix them."""


@dataclass
class Item:
    """One input and what it becomes. ``error`` set: this input is skipped and reported."""

    audio: Path
    stem: str
    out: Path | None = None
    render: Path | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    # a manifest line's own settings (None: the command line's)
    transcript: str | None = None
    style: str | None = None
    character: Path | None = None
    existing: bool = False  # an output file is already there (replaced only with --overwrite)

    @property
    def needs_blender(self) -> bool:
        return self.render is not None or (self.out is not None and self.out.suffix.lower() in SCENE_SUFFIXES)


def expand_lines(paths: list[str | Path]) -> tuple[list[Line], list[str]]:
    """Like :func:`expand_inputs`, and a manifest (.csv/.json) gives its lines with their own settings."""
    lines: list[Line] = []
    notes: list[str] = []
    plain: list[str | Path] = []
    for raw in paths:
        if is_manifest(raw):
            try:
                got = read_manifest(raw)
            except ManifestError as exc:
                raise PlanError(str(exc)) from None
            lines.extend(got)
            notes.append(f"{raw}: {len(got)} line(s) from the manifest")
        else:
            plain.append(raw)
    if plain or not lines:
        inputs, more = expand_inputs(plain)
        lines.extend(Line(audio=p) for p in inputs)
        notes.extend(more)
    return lines, notes


def expand_inputs(paths: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Files stay as given (a missing one fails later, on its own); folders give their audio files
    (sorted, not recursive). Returns (inputs, notes)."""
    if not paths:
        raise PlanError("no input: give one or more audio files or a folder of them")
    inputs: list[Path] = []
    notes: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
            audio = [f for f in files if f.suffix.lower() in AUDIO_SUFFIXES]
            if not audio:
                raise PlanError(f"folder {p} has no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
            stems = {f.stem for f in audio}
            # <stem>.txt beside an audio file is its transcript, not a skipped input
            skipped = sum(1 for f in files if f not in audio and not (f.suffix == ".txt" and f.stem in stems))
            if skipped:
                notes.append(f"{p}: skipped {skipped} non-audio file(s)")
            inputs.extend(audio)
        else:
            inputs.append(p)
    return inputs, notes


def _is_dir_like(p: Path) -> bool:
    return p.is_dir() or str(p).endswith(("/", "\\")) or not p.suffix


def _target(spec: Path | None, stem: str, n_inputs: int, allowed: tuple[str, ...], default_suffix: str,
            flag: str) -> Path:
    """A file (one input), a folder (``<folder>/<stem><default_suffix>``) or a pattern with {stem}."""
    if spec is None:
        return DEFAULT_OUT_DIR / f"{stem}{default_suffix}"
    text = str(spec)
    if "{stem}" in text:
        try:
            p = Path(text.format(stem=stem))
        except (KeyError, IndexError, ValueError) as exc:
            raise PlanError(f"{flag} pattern {text!r} is not usable: only {{stem}} may appear in braces") from exc
    elif _is_dir_like(spec):
        p = spec / f"{stem}{default_suffix}"
    else:
        if n_inputs > 1:
            raise PlanError(
                f"{flag} {spec} names one file but there are {n_inputs} inputs: give a folder "
                f"({flag} out/) or a pattern ({flag} 'out/{{stem}}{spec.suffix}')"
            )
        p = spec
    if p.suffix.lower() not in allowed:
        raise PlanError(f"{flag} {p}: unsupported file type {p.suffix or '(none)'!r}; use one of {', '.join(allowed)}")
    return p


def _companion(out: Path | None) -> Path | None:
    """The file the glTF exporter writes next to a .gltf (its binary buffer)."""
    return out.with_suffix(".bin") if out is not None and out.suffix.lower() == ".gltf" else None


def plan(
    inputs: list[Path] | list[Line],
    out: str | Path | None,
    render: str | Path | None,
    overwrite: bool,
    read_files: tuple[str | Path | None, ...] = (),
) -> list[Item]:
    """One Item per input. Without --out and --render the motion goes to ./talkrig_out/<stem>.glb; with
    only --render, only the video is written. Existing files are never replaced without ``overwrite``:
    such an input fails with a message naming the file, and the others still run. Neither the inputs
    nor ``read_files`` (the --character, a --style reference clip) are ever written, even with
    ``overwrite``. A manifest :class:`Line` may name its own out/render file, which wins over the
    command line's."""
    lines = [x if isinstance(x, Line) else Line(audio=Path(x)) for x in inputs]
    out_spec = Path(out) if out is not None else None
    render_spec = None if render in (None, RENDER_NEXT_TO_OUT) else Path(render)
    n = len(lines)
    items: list[Item] = []
    claimed: dict[Path, Path] = {}  # output -> the input that writes it
    # never written, even with --overwrite (mp4/m4a inputs, the character, a style clip)
    sources = {ln.audio.resolve() for ln in lines}
    read = {Path(f).resolve(): Path(f) for f in (*read_files, *(ln.character for ln in lines)) if f}
    for line in lines:
        audio = line.audio
        item = Item(audio=audio, stem=audio.stem, transcript=line.transcript, style=line.style,
                    character=line.character)
        items.append(item)
        if line.out is not None:
            item.out = _target(line.out, item.stem, 1, MOTION_SUFFIXES + SCENE_SUFFIXES, DEFAULT_SUFFIX, "out")
        elif out_spec is not None or (render is None and line.render is None):
            item.out = _target(out_spec, item.stem, n, MOTION_SUFFIXES + SCENE_SUFFIXES, DEFAULT_SUFFIX, "--out")
        if line.render is not None:
            item.render = _target(line.render, item.stem, 1, (".mp4",), ".mp4", "render")
        elif render == RENDER_NEXT_TO_OUT:
            base = item.out if item.out is not None else DEFAULT_OUT_DIR / item.stem
            item.render = base.with_suffix(".mp4")
        elif render_spec is not None:
            item.render = _target(render_spec, item.stem, n, (".mp4",), ".mp4", "--render")
        for p in (item.out, _companion(item.out), item.render):
            if p is None or item.error:
                continue
            key = p.resolve()
            if key in sources:
                item.error = f"its output {p} is one of the input recordings; choose another output name"
            elif key in read:
                item.error = f"its output {p} is a file this run reads ({read[key]}); choose another output name"
            elif key in claimed:
                item.error = (f"its output {p} would also be written for {claimed[key]} (same file name): "
                              "rename one input or use an --out pattern with a folder per input")
            elif p.is_file() and not overwrite:
                item.error = f"{p} already exists; pass --overwrite to replace it"
                item.existing = True
            elif p.exists() and p.is_dir():
                item.error = f"{p} is a folder, not a file"
            else:
                claimed[key] = audio
                item.existing = item.existing or p.is_file()
    return items


def outputs_of(item: Item) -> list[Path]:
    """The files an input writes (a .gltf's .bin included)."""
    return [p for p in (item.out, _companion(item.out), item.render) if p is not None]
