"""Which files `talkrig animate` and the Blender batch runner (blender_addon.headless) read and write:
input expansion, output naming, overwrite checks, preview settings.

Pure path logic (no audio, no torch, no bpy) so every rule here is cheap to test; the Blender extension
carries a copy of this module, so both commands name and protect their outputs by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from motion_server.options import AUDIO_SUFFIXES
from rig_mapping.formats import FORMATS

from .manifest import Line, ManifestError, is_manifest, read_manifest

# Written in the talkrig process by rig_mapping.formats.
MOTION_SUFFIXES = tuple(FORMATS)
# Written by the Blender job (character + keyed Action).
SCENE_SUFFIXES = (".glb", ".gltf", ".fbx", ".blend")
CHARACTER_SUFFIXES = (".blend", ".glb", ".gltf", ".fbx")
DEMO_CHARACTER = "demo"  # --character demo: the bundled demo head
DEFAULT_OUT_DIR = Path("talkrig_out")
DEFAULT_SUFFIX = ".glb"
RENDER_NEXT_TO_OUT = "auto"  # --render given without a path
RENDER_ENGINES = ("workbench", "cycles", "eevee")
# The job file `talkrig animate` hands the Blender runner (python -m blender_addon.headless --job-file FILE):
# {"version": JOBS_VERSION, "jobs": [{"argv": [runner flags], "takes": [{"name", "motion", "audio"}]}]};
# the runner reports on stdout in lines PROGRESS_PREFIX + json.
JOBS_VERSION = 2
PROGRESS_PREFIX = "@talkrig "


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
    language: str | None = None
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


def out_path(spec: str | Path | None, stem: str, n_inputs: int) -> Path:
    """Where ``--out`` puts the output for the input named ``stem``: ``spec`` as a file (one input), a
    folder (``<folder>/<stem>.glb``) or a pattern with {stem}; None: ./talkrig_out/<stem>.glb."""
    return _target(Path(spec) if spec is not None else None, stem, n_inputs, MOTION_SUFFIXES + SCENE_SUFFIXES,
                   DEFAULT_SUFFIX, "--out")


def render_path(render: str | Path | None, out: Path | None, stem: str, n_inputs: int) -> Path | None:
    """Where ``--render`` puts the preview: given as file/folder/pattern, or ``auto`` (the flag without
    a path): next to ``out`` as <stem>.mp4."""
    if render is None:
        return None
    if render == RENDER_NEXT_TO_OUT:
        return (out if out is not None else DEFAULT_OUT_DIR / stem).with_suffix(".mp4")
    return _target(Path(render), stem, n_inputs, (".mp4",), ".mp4", "--render")


class OutputGuard:
    """Refuses outputs that would destroy something: an input (``inputs``: the recordings, motion files),
    a file the run only reads (``read_files``: the character, a style clip, a profile; never written, even
    with ``overwrite``), an existing file without ``overwrite``, or a file another input already writes."""

    def __init__(self, inputs: list[Path], read_files: tuple[str | Path | None, ...] = (),
                 overwrite: bool = False) -> None:
        self.sources = {Path(a).resolve() for a in inputs}
        self.read = {Path(f).resolve(): Path(f) for f in read_files if f}
        self.overwrite = overwrite
        self.claimed: dict[Path, Path] = {}  # output -> the input that writes it

    def problem(self, out: Path | None, owner: Path) -> str | None:
        """Why ``out`` (and the .bin beside a .gltf) cannot be written for ``owner``; None: it can, and
        is now claimed by ``owner``."""
        for p in (out, _companion(out)):
            if p is None:
                continue
            key = p.resolve()
            if key in self.sources:
                return f"its output {p} is one of the input recordings or motion files; choose another output name"
            if key in self.read:
                return f"its output {p} is a file this run reads ({self.read[key]}); choose another output name"
            if key in self.claimed:
                return (f"its output {p} would also be written for {self.claimed[key]} (same file name): "
                        "rename one input or use an --out pattern with a folder per input")
            if p.exists() and not self.overwrite:
                return f"{p} already exists; pass --overwrite to replace it"
            if p.exists() and p.is_dir():
                return f"{p} is a folder, not a file"
            self.claimed[key] = owner
        return None


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
    n = len(lines)
    items: list[Item] = []
    guard = OutputGuard([ln.audio for ln in lines], (*read_files, *(ln.character for ln in lines)), overwrite)
    for line in lines:
        item = Item(audio=line.audio, stem=line.audio.stem, transcript=line.transcript, style=line.style,
                    language=line.language, character=line.character)
        items.append(item)
        if line.out is not None:
            item.out = out_path(line.out, item.stem, 1)
        elif out is not None or (render is None and line.render is None):
            item.out = out_path(out, item.stem, n)
        item.render = (render_path(line.render, item.out, item.stem, 1) if line.render is not None
                       else render_path(render, item.out, item.stem, n))
        for p in (item.out, item.render):
            if item.error is None:
                item.error = guard.problem(p, line.audio)
        item.existing = any(q.is_file() for q in outputs_of(item))
    return items


def outputs_of(item: Item) -> list[Path]:
    """The files an input writes (a .gltf's .bin included)."""
    return [p for p in (item.out, _companion(item.out), item.render) if p is not None]


def parse_resolution(text: str) -> tuple[int, int]:
    """``--resolution WxH`` -> (w, h): even sides from 16 to 8192 (H.264 needs even sizes)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PlanError(f"--resolution {text!r}: write it as WIDTHxHEIGHT, e.g. 480x480") from None
    if w < 16 or h < 16 or w % 2 or h % 2 or w > 8192 or h > 8192:
        raise PlanError(f"--resolution {w}x{h}: both sides must be even numbers from 16 to 8192 (H.264 needs even sizes)")
    return w, h


def check_samples(samples: int | None) -> None:
    if samples is not None and samples < 1:
        raise PlanError(f"--samples {samples}: needs at least 1 sample")


def check_character(path: str | None) -> None:
    """``--character``: 'demo' or an existing .blend/.glb/.gltf/.fbx file."""
    if path is None or path == DEMO_CHARACTER:
        return
    p = Path(path)
    if p.suffix.lower() not in CHARACTER_SUFFIXES:
        raise PlanError(f"--character {p}: use a {', '.join(CHARACTER_SUFFIXES)} file, or '{DEMO_CHARACTER}' "
                        "for the bundled demo head")
    if not p.is_file():
        raise PlanError(f"--character {p}: file not found")
