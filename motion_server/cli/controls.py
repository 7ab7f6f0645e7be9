"""The generation controls every generating command shares (generate, animate): one definition of the
flags and of how they become GenerateOptions, so the commands cannot drift apart."""

from __future__ import annotations

import argparse
from typing import Any

from motion_server.cli.argtypes import non_negative, positive


def add_generation_controls(p: Any) -> None:
    """Add --style, --guidance, --intensity, --head-motion, --blink-rate, --seed, --steps, --sampler, --fps
    to a parser or argument group."""
    p.add_argument("--style", help="style preset (e.g. neutral, happy, sad:3), 'predicted', or a reference clip "
                                   "(.csv Live Link Face / .npz)")
    p.add_argument("--guidance", type=non_negative, default=1.0, help="style guidance scale (default 1.0)")
    p.add_argument("--intensity", type=non_negative, default=1.0, help="expression intensity (default 1.0)")
    p.add_argument("--head-motion", type=non_negative, default=1.0, help="head motion amount (default 1.0)")
    p.add_argument("--blink-rate", type=non_negative, metavar="PER_MIN", help="blinks per minute (default: the style's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same result")
    p.add_argument("--steps", type=int, default=8, help="diffusion sampling steps (default 8)")
    p.add_argument("--sampler", default="dpm", metavar="NAME", help="diffusion sampler (default dpm)")
    p.add_argument("--fps", type=positive, default=30.0, help="motion frame rate (default 30)")
    p.add_argument("--no-transcribe", dest="transcribe", action="store_false",
                   help="without a transcript, do not recognise one: the audio alone drives the lips "
                        "(by default speech is recognised with Whisper and, for English, aligned to phones)")
    p.add_argument("--asr-model", metavar="NAME|DIR", default=None,
                   help="speech recogniser: tiny.en (default), base, or a faster-whisper model folder")


def generate_options(args: argparse.Namespace, transcript: str | None):
    """GenerateOptions from the parsed controls."""
    from motion_server.engine.base import GenerateOptions

    return GenerateOptions(
        style=args.style, guidance=args.guidance, intensity=args.intensity, head_motion=args.head_motion,
        blink_rate=args.blink_rate, seed=args.seed, steps=args.steps, sampler=args.sampler, fps=args.fps,
        transcript=transcript, transcribe=getattr(args, "transcribe", True),
    )
