"""What each Whisper encoder costs as the model's front end: load time and the time to encode 60 s of
speech (the shipped JFK clip repeated), median of 3, with two torch threads.

    python scripts/measure_speech_encoder_cost.py [--weights tiny.en base] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", nargs="+", default=["tiny.en", "base"])
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    import torch

    from motion_server.audio.io import load_audio
    from motion_server.model.speech_encoder import encode_audio, load_speech_encoder

    torch.set_num_threads(args.threads)
    clip = load_audio(REPO / "examples" / "jfk.flac", sr=16000)
    n = int(args.seconds * 16000)
    audio = np.tile(clip, n // len(clip) + 1)[:n]
    for w in args.weights:
        t = time.perf_counter()
        enc, _ = load_speech_encoder(w)
        load_s = time.perf_counter() - t
        encode_audio(enc, audio[:16000 * 5])  # warm-up
        times = []
        for _ in range(3):
            t = time.perf_counter()
            encode_audio(enc, audio)
            times.append(time.perf_counter() - t)
        print(json.dumps({"weights": w, "load_s": round(load_s, 3), "encode_s_median": round(sorted(times)[1], 3),
                          "audio_s": args.seconds, "threads": args.threads,
                          "parameters_m": round(sum(q.numel() for q in enc.parameters()) / 1e6, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
