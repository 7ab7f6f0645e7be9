"""Motion statistics of the default pipeline on the shared emotional recordings (NVIDIA Audio2Face-3D's
Claire / Mark samples), as a user runs it: default settings, no transcript given (recognised where the
recogniser trusts itself) and audio only. Medians over clips, next to the real references.

    python scripts/measure_emotional_motion.py [--shared-dir ../shared] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
KEYS = ("head_std_pitch_deg", "head_std_yaw_deg", "head_std_roll_deg", "head_range_deg", "head_jitter_deg",
        "blink_rate_per_min", "blink_peak_median", "blink_duration_ms_median", "brow_inner_up_std",
        "brow_outer_up_std")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shared-dir", type=Path, default=REPO.parent / "shared")
    p.add_argument("--json", type=Path)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    args = p.parse_args(argv)
    if args.json and args.json.exists() and not args.overwrite:
        print(f"{args.json} exists; pass --overwrite to replace it or choose another --json", file=sys.stderr)
        return 2
    from motion_server.audio.io import load_audio
    from motion_server.engine.base import GenerateOptions
    from motion_server.engine.registry import create_engine
    from motion_server.evaluation.motion_stats import motion_stats
    from motion_server.pipeline import MotionPipeline
    from motion_server.transcribe.recogniser import Recogniser

    speech = args.shared_dir / "data" / "speech"
    clips = sorted(speech.glob("audio2face_3d_samples__*.wav"))
    if not clips:
        print(f"no audio2face_3d_samples__*.wav under {speech}; give --shared-dir", file=sys.stderr)
        return 2
    pipe = MotionPipeline(create_engine("diffusion"), Recogniser())
    out: dict[str, dict] = {}
    for mode, opts in (("recognised", GenerateOptions()), ("audio_only", GenerateOptions(transcribe=False))):
        rows = {}
        for c in clips:
            m = pipe.generate(load_audio(c, sr=16000), 16000, opts)
            rows[c.name] = {k: motion_stats(m).get(k) for k in KEYS}
        med = {k: round(float(np.median([r[k] for r in rows.values() if r[k] is not None])), 4) for k in KEYS}
        out[mode] = {"clips": rows, "median": med}
        print(mode, json.dumps(med))
    if args.json:
        from rig_mapping.atomic import write_bytes_atomic

        write_bytes_atomic(args.json, (json.dumps(out, indent=1) + "\n").encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
