"""What a CPU forward costs per row as batches grow, and what splitting it into one-thread lanes buys: the
measurements behind ``device.CoreShare`` and the "why modest" section of docs/scaling.md. Median of 7
after a warm-up, the bundled model, random inputs of the real shapes; JSON on stdout.

    python scripts/measure_cpu_forwards.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _median_s(fn: Callable[[], object], n: int = 7) -> float:
    from motion_server.bench.timing import measure  # the bench's own timing: one warm-up, then n timed runs

    return float(measure(fn, repeats=n, warmup=1)["median"])


def main() -> int:
    import torch

    from motion_server.model.device import CoreShare, torch_threads
    from motion_server.model.engine import DiffusionEngine

    eng = DiffusionEngine(device="cpu")
    m, enc = eng.model, eng.features.speech.encoder
    lanes = CoreShare(2)
    frames = int(eng.cfg["window"]["frames"])
    out: dict[str, object] = {"denoiser_ms_per_row": [], "encoder_ms_per_10s_window": []}
    with torch.inference_mode():
        cond_dim = m.encode_audio(torch.zeros(1, frames, eng.features.dim)).shape[-1]
        for rows in (2, 5, 10, 20, 40, 80):
            x = torch.randn(rows, frames, m.motion_std.shape[0])
            c = torch.randn(rows, frames, cond_dim)
            t = torch.full((rows,), 500)
            s = torch.randn(rows, m.presets.shape[1])
            row = {"rows": rows}
            for threads in (1, 2):
                with torch_threads(threads):
                    row[f"threads_{threads}"] = round(_median_s(partial(m.denoise, x, c, t, s)) * 1000 / rows, 3)
            split = partial(lanes.run, m.denoise, x, c, t, s, lane_rows=1)
            row["two_lanes"] = round(_median_s(split) * 1000 / rows, 3)
            out["denoiser_ms_per_row"].append(row)
        for batch in (1, 8):
            mel = torch.randn(batch, enc.n_mels, 1000)
            row = {"windows": batch}
            for threads in (1, 2):
                with torch_threads(threads):
                    row[f"threads_{threads}"] = round(_median_s(partial(enc, mel), 5) * 1000 / batch, 1)
            out["encoder_ms_per_10s_window"].append(row)
    lanes.close()
    json.dump(out, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
