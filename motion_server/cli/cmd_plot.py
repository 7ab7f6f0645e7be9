"""``talkrig plot``: a PNG of a motion's main curves and head angles over the audio waveform, with the
real references' levels, so a person can look instead of read numbers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from motion_server.cli.controls import add_generation_controls, generate_options
from motion_server.client import DEFAULT_ADDRESS
from motion_server.engine.registry import ENGINE_NAMES

EPILOG = """\
INPUT is an audio file (the motion is generated the way `talkrig animate` does it: default engine and
options, a <stem>.txt beside the audio is its transcript) or a saved motion (.npz, Live Link Face .csv,
Audio2Face .json; add --audio to draw its waveform). An existing PNG is never replaced without --overwrite.

examples:
  talkrig plot examples/jfk.flac --out jfk.png
  talkrig plot take.csv --audio take.wav --out take.png
  talkrig plot speech.wav --engine procedural --style happy:2 --out happy.png
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "plot",
        help="PNG of a motion's curves and head angles over the waveform, next to real people's ranges",
        description="Draw the waveform, jaw/mouth, eyelids, brows and head angles of a generated or saved motion "
                    "on one time axis, with the real references' levels (motion_targets.json).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="AUDIO|MOTION", help="audio file to generate from, or a .npz/.csv/.json motion")
    p.add_argument("--audio", metavar="FILE", help="the motion's audio, for the waveform (with a saved motion)")
    p.add_argument("--out", "-o", metavar="F.png", help="PNG to write (default ./<input stem>.png)")
    p.add_argument("--overwrite", "--force", action="store_true", help="replace an existing PNG")
    p.add_argument("--size", default="1600x1200", metavar="WxH", help="picture size in pixels (default 1600x1200)")
    p.add_argument("--title", help="title over the picture (default: the input's name and the engine)")
    gen = p.add_argument_group("generation (audio input)")
    gen.add_argument("--engine", choices=ENGINE_NAMES,
                     help="diffusion (model), procedural or energy; default: diffusion when a checkpoint is "
                          "available, else procedural")
    gen.add_argument("--model", metavar="CKPT", help="diffusion checkpoint folder (implies --engine diffusion)")
    gen.add_argument("--server", metavar="ADDR", help=f"use a running motion server, e.g. {DEFAULT_ADDRESS}")
    add_generation_controls(gen)
    gen.add_argument("--transcript", metavar="TEXT", help="what is said; without it a <stem>.txt beside the audio is used")
    gen.add_argument("--no-transcript-files", dest="transcript_files", action="store_false",
                     help="ignore a <stem>.txt beside the audio (generate from the audio alone)")
    p.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"talkrig plot: error: {msg}", file=sys.stderr)
    return 2


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {text!r}: write it as WIDTHxHEIGHT, e.g. 1600x1200") from None
    if not (400 <= w <= 8000 and 300 <= h <= 8000):
        raise ValueError(f"--size {w}x{h}: width 400-8000 and height 300-8000 pixels")
    return w, h


def run(args: argparse.Namespace) -> int:
    from motion_server.audio.io import AudioError, load_audio
    from motion_server.options import SAMPLE_RATE
    from rig_mapping.formats import FORMATS, FormatError, load_motion

    src = Path(args.input)
    out = Path(args.out) if args.out else Path.cwd() / f"{src.stem}.png"
    if out.suffix.lower() != ".png":
        return _err(f"--out {out}: the picture is a PNG; name it *.png")
    if out.exists() and not args.overwrite:
        return _err(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        return _err(f"output folder {out.parent} does not exist; create it first")
    if not src.is_file():
        return _err(f"input not found: {src}")
    try:
        size = _size(args.size)
    except ValueError as exc:
        return _err(str(exc))
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return _err("matplotlib is not installed; install it with `pip install matplotlib` (scripts/setup.sh does)")

    is_motion = src.suffix.lower() in FORMATS
    audio_path = Path(args.audio) if args.audio else (None if is_motion else src)
    if args.audio and not is_motion:
        return _err("--audio is for a saved motion; an audio INPUT is its own audio")
    if audio_path is not None and not audio_path.is_file():
        return _err(f"audio file not found: {audio_path}")
    try:
        audio = load_audio(audio_path, sr=SAMPLE_RATE) if audio_path is not None else None
        if is_motion:
            motion = load_motion(src)
            label = src.name
        else:
            motion, label = _generate(src, args)
    except (AudioError, FormatError, ValueError, RuntimeError, OSError) as exc:
        return _err(str(exc))

    from motion_server.evaluation.plot import plot_motion

    title = args.title if args.title is not None else label
    path = plot_motion(motion, out, audio=audio, sr=SAMPLE_RATE if audio is not None else None,
                       size_px=size, title=title)
    print(f"wrote {path} ({size[0]}x{size[1]}, {motion.duration:.2f} s of motion)")
    return 0


def _generate(audio_path: Path, args: argparse.Namespace):
    """audio -> motion through `talkrig animate`'s path (engine choice, style reference, sidecar transcript,
    length fitted to the audio); returns (motion, a label naming the engine)."""
    from motion_server.animate.generate import (
        animate_file,
        load_style_reference,
        make_generator,
        resolve_engine_name,
    )

    engine = "diffusion" if args.model and not args.engine else args.engine
    name, notice = resolve_engine_name(engine, args.model)
    if notice:
        print(f"talkrig plot: {notice}", file=sys.stderr)
    options = load_style_reference(generate_options(args, args.transcript))
    gen = make_generator(name, args.model, args.server)
    try:
        motion, _, notes = animate_file(gen, audio_path, options, sidecar=args.transcript_files)
    finally:
        gen.close()
    for note in notes:
        print(f"talkrig plot: {audio_path.name}: {note}", file=sys.stderr)
    style = options.style or ("reference clip" if options.style_reference is not None else "default style")
    return motion, f"{audio_path.name}: {gen.label}, {style}, seed {options.seed}"
