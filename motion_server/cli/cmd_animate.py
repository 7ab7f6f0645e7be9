"""`talkrig animate`: the headless main job. Audio in; an animated character, motion curves and/or a
preview video out."""

from __future__ import annotations

import argparse
from pathlib import Path

from motion_server.animate.plan import DEMO_CHARACTER, RENDER_ENGINES, RENDER_NEXT_TO_OUT
from motion_server.cli.controls import add_generation_controls, generate_options
from motion_server.client import DEFAULT_ADDRESS
from motion_server.engine.registry import ENGINE_NAMES

EPILOG = """\
outputs (by --out suffix):
  .glb .gltf .fbx .blend   the character (default: the bundled demo head) with the motion keyed into
                           a new Action, written by a Blender child process (the batch runner
                           `python -m blender_addon.headless`, whose flags have the same names)
  .npz .csv .json          motion curves only: TalkRig npz, Live Link Face CSV, Audio2Face JSON
  one input: --out is the file; several inputs (files or folders): --out is a folder or a pattern
  such as 'out/{stem}.fbx'. Default: ./talkrig_out/<stem>.glb (none when only --render is given).
  Existing files are never replaced without --overwrite.

batches:
  AUDIO may be a manifest (.csv with a header row, or .json): one line per recording with its own
  audio, transcript, style, character, out and render (relative paths from the manifest's folder).
  --jobs N runs N local worker processes (each loads the model once); --ray auto|ADDRESS fans the work
  out over a Ray cluster. Re-running skips inputs whose outputs are up to date (same audio and settings,
  recorded in .talkrig-ledger.jsonl beside them); --force makes them again. A worker that dies is
  replaced and its input retried (--retries); a failed input never stops the batch.

examples:
  talkrig animate examples/hello_flite.flac --out out/hello.glb --render out/hello.mp4
  talkrig animate lines.csv --out 'out/{stem}.csv' --jobs 2 --report out/report.json
  talkrig animate recordings/ --out 'out/{stem}.fbx' --character hero.blend
  talkrig animate a.wav b.wav --out curves/ --engine procedural     (curves/a.glb, curves/b.glb)
  talkrig animate take.m4a --out take.csv                           (Live Link Face CSV)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "animate",
        help="audio file(s) -> animated character (.glb/.fbx/.blend), curves (.npz/.csv) and preview video",
        description="Generate facial animation from speech and apply it to a character, headless.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="AUDIO",
                   help="audio files (wav, flac, mp3, m4a, ogg, opus...), folders of them, or a .csv/.json manifest")
    io = p.add_argument_group("files")
    io.add_argument("--out", "-o", metavar="PATH", help="output file, folder or {stem} pattern (see below)")
    io.add_argument("--character", metavar=f"FILE|{DEMO_CHARACTER}",
                    help=f"character to animate (.blend/.glb/.gltf/.fbx), or '{DEMO_CHARACTER}': the bundled demo head "
                         "(the default)")
    io.add_argument("--overwrite", action="store_true", help="replace existing output files")
    io.add_argument("--target", metavar="OBJECT",
                    help="object name of the character in --character (default: the first with ARKit-like shape "
                         "keys or head/jaw bones)")
    io.add_argument("--profile", metavar="NAME|FILE",
                    help="mapping profile onto the character: preset name or .toml/.json file (default: automatic)")
    rnd = p.add_argument_group("preview video")
    rnd.add_argument("--render", nargs="?", const=RENDER_NEXT_TO_OUT, metavar="OUT.mp4",
                     help="also render an H.264/AAC preview; without a path it goes next to --out as <stem>.mp4")
    rnd.add_argument("--resolution", default="480x480", metavar="WxH", help="preview size (default 480x480)")
    rnd.add_argument("--samples", type=int, help="Cycles samples (default 16) / Workbench anti-aliasing samples (default: FXAA)")
    rnd.add_argument("--render-engine", choices=RENDER_ENGINES, default="workbench",
                     help="workbench (fast, default), cycles (CPU path tracing) or eevee (needs a GPU: minutes per frame without one)")
    bat = p.add_argument_group("batch")
    bat.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                     help="local worker processes (default 1: this process); each loads the model once")
    bat.add_argument("--ray", metavar="ADDRESS", nargs="?", const="auto",
                     help="run on a Ray cluster: 'auto' (the cluster this machine is in, else a local one) or "
                          "its address; needs pip install 'talkrig[ray]'")
    bat.add_argument("--retries", type=int, default=2, metavar="N",
                     help="more tries for an input whose worker died (default 2); a bad input is not retried")
    bat.add_argument("--force", action="store_true",
                     help="make every output again, even those the ledger says are up to date")
    bat.add_argument("--report", metavar="FILE.json", help="write a JSON report: every input, result, time, worker")
    gen = p.add_argument_group("generation")
    gen.add_argument("--engine", choices=ENGINE_NAMES,
                     help="diffusion (model), procedural (phone-driven performer) or energy (baseline); "
                          "default: diffusion when a checkpoint is available, else procedural")
    gen.add_argument("--model", metavar="CKPT", help="diffusion checkpoint folder (implies --engine diffusion)")
    gen.add_argument("--server", metavar="ADDR", help=f"use a running motion server, e.g. {DEFAULT_ADDRESS} (see talkrig serve)")
    add_generation_controls(gen)
    gen.add_argument("--transcript", metavar="TEXT",
                     help="what is said (one input only); aligned to the audio for exact lip closures. Without it, "
                          "a <stem>.txt beside each audio file is its transcript")
    gen.add_argument("--no-transcript-files", dest="transcript_files", action="store_false",
                     help="ignore <stem>.txt files beside the audio (generate from the audio alone)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    if args.jobs > 1 and not args.ray and not args.server and args.engine in (None, "diffusion"):
        from motion_server.animate.fork_server import start_worker_imports

        # first: the workers' imports (torch, the model) run while this process loads and plans
        start_worker_imports()
    from motion_server.animate.generate import load_style_reference
    from motion_server.animate.plan import PlanError, check_samples, parse_resolution
    from motion_server.animate.run import Settings, animate

    try:
        resolution = parse_resolution(args.resolution)
        # --fps and --steps are range-checked by their argparse types (the option table)
        check_samples(args.samples)
        if args.jobs > 1 and args.ray:
            raise PlanError("--jobs and --ray: choose one (Ray decides its own workers)")
        if args.transcript and (len(args.inputs) > 1 or Path(args.inputs[0]).is_dir()):
            raise PlanError("--transcript describes one recording; give a single audio file with it")
    except PlanError as exc:
        print(f"talkrig animate: {exc}", file=sys.stderr)
        return 2
    options = generate_options(args, args.transcript)
    style_file = args.style if options.style_reference is None and args.style else None
    try:
        options = load_style_reference(options)  # read once here, used for every input
    except (ValueError, OSError) as exc:
        print(f"talkrig animate: --style {args.style}: {exc}", file=sys.stderr)
        return 2
    settings = Settings(
        inputs=args.inputs, out=args.out, render=args.render, character=args.character, resolution=resolution,
        samples=args.samples, render_engine=args.render_engine,
        engine="diffusion" if args.model and not args.engine else args.engine,
        model=args.model, server=args.server, overwrite=args.overwrite, options=options,
        transcript_files=args.transcript_files, asr_model=args.asr_model,
        style_file=style_file if options.style_reference is not None else None,
        jobs=args.jobs, ray=args.ray, retries=args.retries, force=args.force, report=args.report,
        target=args.target, profile=args.profile,
    )
    return animate(settings)
