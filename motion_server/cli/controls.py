"""The generation controls every generating command shares (generate, animate): the flags come from the
one option table (motion_server.options), so their limits, defaults and help match the protocol, the
engines and the Blender panel."""

from __future__ import annotations

import argparse
from typing import Any

from motion_server.options import add_arguments, from_arguments


def add_generation_controls(p: Any) -> None:
    """Add --style, --guidance, --intensity, --head-motion, --blink-rate, --seed, --steps, --sampler, --fps,
    --no-transcribe (all from the option table) and --asr-model to a parser or argument group."""
    add_arguments(p)
    p.add_argument("--asr-model", metavar="NAME|DIR", default=None,
                   help="speech recogniser: tiny.en (default), base, or a faster-whisper model folder")


def generate_options(args: argparse.Namespace, transcript: str | None):
    """GenerateOptions from the parsed controls (None where the user chose nothing: the model's or the
    style's own value applies)."""
    from motion_server.engine.base import GenerateOptions

    values = from_arguments(args)
    values.setdefault("transcribe", True)
    return GenerateOptions(**values, transcript=transcript)
