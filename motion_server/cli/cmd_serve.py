"""talkrig serve: run the ZeroMQ motion server (loopback by default)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from motion_server.client import DEFAULT_ADDRESS


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the motion server (ZeroMQ) that Blender and scripts send audio to",
        description="Run the TalkRig motion server. One engine owns the model and device; clients queue jobs. "
        f"Binds {DEFAULT_ADDRESS} by default. Protocol: docs/protocol.md.",
    )
    p.add_argument("--bind", action="append", metavar="ADDR",
                   help="tcp://HOST:PORT or ipc:///path (repeatable; default tcp://127.0.0.1:5557). "
                   "Non-loopback addresses need --curve-secret")
    p.add_argument("--engine", default=None,
                   help="engine: diffusion, procedural, energy, or module:Class (default: diffusion)")
    p.add_argument("--model", default=None, help="checkpoint for the diffusion engine (default: the bundled one)")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"], help="where the model runs (default auto)")
    p.add_argument("--curve-secret", type=Path, default=None, metavar="FILE",
                   help="server.key_secret from `talkrig keygen`: encrypts traffic, allows non-loopback binds")
    p.add_argument("--max-message-mb", type=float, default=64.0, help="largest accepted message (default 64)")
    p.add_argument("--max-audio-seconds", type=float, default=600.0, help="longest accepted clip (default 600)")
    p.add_argument("--max-queue", type=int, default=64, help="most jobs waiting at once (default 64)")
    p.add_argument("--no-transcribe", dest="transcribe", action="store_false",
                   help="never recognise speech (takes without a transcript are animated from the audio alone, "
                        "and transcribe requests are refused)")
    p.add_argument("--asr-model", metavar="NAME|DIR", default=None,
                   help="speech recogniser: tiny.en (default), base, or a faster-whisper model folder; loaded "
                        "on first use, once per server")
    p.add_argument("--max-queued-mb", type=float, default=256.0,
                   help="audio bytes all queued jobs may hold together (default 256)")
    p.add_argument("--max-client-jobs", type=int, default=8,
                   help="queued + running jobs one client may have (default 8)")
    p.add_argument("--max-client-mb", type=float, default=128.0,
                   help="audio bytes one client's queued jobs may hold (default 128)")
    p.add_argument("--max-memory-mb", type=float, default=0.0,
                   help="resident memory above which all connections are dropped to free network buffers "
                   "(jobs continue; clients reconnect). Default 0: memory at start-up + 640 MB")
    p.add_argument("--max-batch", type=int, default=0, metavar="N",
                   help="diffusion engine: most windows (3 s of one job each) in one shared denoiser forward; "
                   "concurrent jobs' windows are packed together, round-robin (default 0: 32 on a CPU, the model's "
                   "window.max_batch, 64, on a GPU)")
    p.add_argument("--max-running", type=int, default=8, metavar="N",
                   help="diffusion engine: most jobs sampled at once, sharing forwards; more wait in the queue "
                   "(default 8; engines that cannot batch run one job at a time)")
    p.add_argument("--shared-jobs", action="store_true",
                   help="let every client see and cancel every job (one trusted user); by default a client "
                   "sees and cancels only its own")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    log = logging.getLogger("talkrig.server")
    from motion_server.engine.registry import DEFAULT_ENGINE
    from motion_server.server import BindRefused, ServerConfig, check_binds, load_engine, run_server
    from motion_server.server.keys import CurveKeyError, load_secret

    cfg = ServerConfig(
        binds=args.bind or [DEFAULT_ADDRESS],
        curve_secret=args.curve_secret,
        max_message_mb=args.max_message_mb,
        max_audio_seconds=args.max_audio_seconds,
        max_queue=args.max_queue,
        max_queued_mb=args.max_queued_mb,
        max_client_jobs=args.max_client_jobs,
        max_client_mb=args.max_client_mb,
        max_memory_mb=args.max_memory_mb,
        shared_jobs=args.shared_jobs,
        max_batch=args.max_batch,
        max_running=args.max_running,
    )
    if min(args.max_message_mb, args.max_audio_seconds, args.max_queue, args.max_queued_mb, args.max_client_jobs,
           args.max_client_mb, args.max_running) <= 0 or args.max_memory_mb < 0 or args.max_batch < 0:
        print("talkrig serve: --max-message-mb, --max-audio-seconds, --max-queue, --max-queued-mb, "
              "--max-client-jobs, --max-client-mb and --max-running must be positive (--max-batch 0 or more)",
              file=sys.stderr)
        return 2
    try:
        check_binds(cfg.binds, curve=cfg.curve_secret is not None)
        if cfg.curve_secret is not None:
            load_secret(cfg.curve_secret)
    except (BindRefused, CurveKeyError) as e:
        print(f"talkrig serve: {e}", file=sys.stderr)
        return 2
    name = args.engine or DEFAULT_ENGINE
    log.info("loading engine %s ...", name)
    try:
        engine = load_engine(name, model=args.model, device=args.device)
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"talkrig serve: cannot start engine {name!r}: {e}\n(fix: --model CHECKPOINT_DIR for the diffusion "
              "engine, or --engine procedural / energy, which need no checkpoint)", file=sys.stderr)
        return 2
    try:
        from motion_server.pipeline import default_recogniser

        return run_server(engine, cfg, default_recogniser(args.asr_model) if args.transcribe else None)
    except OSError as e:
        print(f"talkrig serve: {e}", file=sys.stderr)
        return 1
