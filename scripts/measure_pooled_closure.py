"""Bilabial closure on the shared real English clips pooled over every /p b m/ (not averaged per clip),
for several seeds, audio only (no transcript, no recognition). The suite's mean over clips lets one clip
with a single bilabial move it by 1/15; pooled, each bilabial counts once.

    python scripts/measure_pooled_closure.py [--model CHECKPOINT] [--seeds 0 1] [--shared-dir ../shared]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="checkpoint folder (default: the bundled model)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--shared-dir", type=Path, default=REPO.parent / "shared")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from motion_server.engine.base import GenerateOptions
    from motion_server.evaluation.geometry import lip_gap
    from motion_server.evaluation.metrics import BILABIALS, CLOSURE_THRESHOLD_CM, mid_frames
    from motion_server.evaluation.suites import real_clips
    from motion_server.model.engine import DiffusionEngine

    clips = [c for c in real_clips(args.shared_dir) if c.phones]
    if not clips:
        print(f"no real clips with phones under {args.shared_dir}", file=sys.stderr)
        return 1
    engine = DiffusionEngine(args.model, device="cpu")
    out = {}
    for seed in args.seeds:
        shut = total = 0
        for c in clips:
            motion = engine.generate(c.audio, c.sr, GenerateOptions(seed=seed))
            gap = lip_gap(motion)
            frames = mid_frames(c.phones, BILABIALS, motion.fps, len(gap))
            shut += int((gap[frames] < CLOSURE_THRESHOLD_CM).sum())
            total += len(frames)
        out[str(seed)] = {"closed": shut, "bilabials": total, "closure": round(shut / total, 3) if total else None}
    print(json.dumps({"model": args.model or "default", "clips": len(clips), "seeds": out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
