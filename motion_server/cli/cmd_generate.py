"""`talkrig generate`: one audio file -> motion curves (.npz / Live Link Face .csv / Audio2Face .json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from motion_server.cli.argtypes import positive
from motion_server.cli.controls import add_generation_controls, generate_options
from motion_server.client import DEFAULT_ADDRESS
from motion_server.engine.registry import DEFAULT_ENGINE, ENGINE_NAMES
from motion_server.options import SAMPLE_RATE

EPILOG = f"""\
output (by --out suffix): .npz TalkRig (lossless), .csv Live Link Face, .json Audio2Face.
Default --out: ./<audio stem>.npz. An existing file is never replaced without --overwrite.

examples:
  talkrig generate speech.wav --out speech.csv
  talkrig generate jfk.flac --engine procedural --transcript "And so my fellow Americans" --style happy:3
  talkrig generate take.m4a --server {DEFAULT_ADDRESS} --out take.npz
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="audio file -> ARKit motion curves (.npz/.csv/.json)",
        description="Generate ARKit-52 facial animation curves and head pose from speech audio.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file (wav, flac, mp3, m4a, ogg, opus...)")
    p.add_argument("--out", "-o", metavar="PATH", help="output .npz, .csv (Live Link Face) or .json (Audio2Face)")
    p.add_argument("--overwrite", "--force", action="store_true", help="replace an existing output file")
    p.add_argument("--engine", choices=ENGINE_NAMES, default=None,
                   help=f"diffusion (model), procedural (phone-driven performer, no model) or energy "
                        f"(loudness baseline); default {DEFAULT_ENGINE}")
    tr = p.add_mutually_exclusive_group()
    tr.add_argument("--transcript", metavar="TEXT", help="what is said: aligned to the audio by the procedural engine and by diffusion "
                         "models with a phone track (the bundled one) for exact lip closures")
    tr.add_argument("--transcript-file", metavar="FILE", help="read the transcript from a UTF-8 text file")
    add_generation_controls(p)
    p.add_argument("--model", metavar="CKPT", help="diffusion checkpoint folder")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the model runs")
    p.add_argument("--server", metavar="ADDR", help=f"use a running motion server, e.g. {DEFAULT_ADDRESS}")
    p.add_argument("--server-key", metavar="KEY", help="the server's CurveZMQ public key (server.key from "
                   "`talkrig keygen`, or its 40 characters) for an encrypted remote server")
    p.add_argument("--timeout", type=positive, default=60.0, metavar="S", help="server silence limit (default 60 s)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _err(msg: str) -> int:
    print(f"talkrig generate: error: {msg}", file=sys.stderr)
    return 2


class _Bar:
    """tqdm bar fed by (fraction, stage) progress events."""

    def __init__(self, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=100, unit="%", desc="generate", file=sys.stderr,
                             bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")

    def __call__(self, fraction: float, stage: str) -> None:
        if self._bar is None:
            return
        self._bar.set_description_str(stage or "generate")
        target = int(round(max(0.0, min(1.0, float(fraction))) * 100))
        if target > self._bar.n:
            self._bar.update(target - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b) or a.resolve() == b.resolve()
    except OSError:
        return False


def _make_pipeline(name: str, args: argparse.Namespace) -> Any:
    from motion_server.animate.generate import make_pipeline

    try:
        return make_pipeline(name, model=args.model, device=args.device if name == "diffusion" else None,
                             asr_model=args.asr_model, transcribe=args.transcribe)
    except (ImportError, FileNotFoundError, OSError) as exc:
        hint = "pass --model CKPT with a trained checkpoint, or use --engine procedural (no model needed)"
        raise RuntimeError(f"the {name} engine is not available: {exc}\n  {hint}") from exc


def run(args: argparse.Namespace) -> int:
    from motion_server.audio.io import AudioError, audio_sha256, load_audio
    from rig_mapping.formats import FormatError, format_for, save_motion

    audio_path = Path(args.audio)
    out = Path(args.out) if args.out else Path.cwd() / f"{audio_path.stem}.npz"
    try:
        format_for(out)
    except FormatError as exc:
        return _err(str(exc))
    if out.exists() and not args.overwrite:
        return _err(f"{out} already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        return _err(f"output folder {out.parent} does not exist; create it first")
    for flag, given in (("AUDIO", args.audio), ("--transcript-file", args.transcript_file), ("--style", args.style)):
        if given and _same_file(out, Path(given)):  # even with --overwrite: it is what this run reads
            return _err(f"--out {out} is the {flag} input; choose another output name")
    try:  # before generating, not after: a read-only folder is reported naming the folder
        from rig_mapping.atomic import prepare_output

        prepare_output(out)
    except OSError as exc:
        return _err(str(exc))

    transcript = args.transcript
    if args.transcript_file:
        try:
            transcript = Path(args.transcript_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return _err(f"cannot read --transcript-file {args.transcript_file}: {exc}")
    if not audio_path.is_file():
        return _err(f"audio file not found: {audio_path}")
    if args.server_key and not args.server:
        return _err("--server-key only applies with --server ADDR")
    options = generate_options(args, transcript)

    bar = _Bar(not args.quiet)
    try:
        # a reference clip is read here and sent as data: the server may not see this machine's files
        from motion_server.animate.generate import load_style_reference

        options = load_style_reference(options)
        if args.server:
            if args.engine is not None or args.model:
                print("talkrig generate: note: --engine/--model are chosen by the server (talkrig serve); "
                      "ignored with --server", file=sys.stderr)
            from motion_server.client import MotionClient

            with MotionClient(args.server, timeout_s=args.timeout, server_public_key=args.server_key) as client:
                motion = client.generate(audio_path, options, progress=bar)
            engine_name = f"server {args.server}"
        else:
            engine_name = args.engine or DEFAULT_ENGINE
            audio = load_audio(audio_path, sr=SAMPLE_RATE)
            pipeline = _make_pipeline(engine_name, args)
            try:
                motion = pipeline.generate(audio, SAMPLE_RATE, options, progress=bar)
            finally:
                pipeline.close()
    except (AudioError, FormatError, ValueError, RuntimeError, OSError) as exc:
        bar.close()
        return _err(str(exc))
    except Exception as exc:  # server/client errors carry their own clear messages
        bar.close()
        if type(exc).__module__.startswith("motion_server"):
            return _err(f"{type(exc).__name__}: {exc}")
        raise
    bar.close()

    if abs(motion.fps - args.fps) > 1e-6:  # an engine with a native rate: deliver what was asked for
        motion = motion.resample(args.fps)
    meta = dict(motion.meta)
    meta.setdefault("engine", engine_name)
    meta.update(audio_file=audio_path.name, audio_sha256=audio_sha256(audio_path))
    motion = motion.replace(meta=meta)
    try:
        path = save_motion(motion, out, overwrite=args.overwrite)
    except (FileExistsError, FormatError, OSError) as exc:
        return _err(str(exc))
    from motion_server.pipeline import transcript_summary

    heard = transcript_summary(motion)
    if heard:
        print(heard)
    print(f"wrote {path} ({motion.n_frames} frames, {motion.duration:.2f} s at {motion.fps:g} fps, {engine_name})")
    return 0
