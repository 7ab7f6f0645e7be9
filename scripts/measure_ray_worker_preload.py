"""Does a Ray cluster whose workers import torch and the engine before taking work (Ray's
``RAY_preload_python_modules``, set when the cluster starts), or one left to settle before the batch,
bring ``talkrig animate --ray auto`` closer to ``--jobs 2``? Interleaved rounds over the bench's 40 short
scripted lines (motion only), a fresh one-node cluster per Ray run.

    python scripts/measure_ray_worker_preload.py [--rounds 3] [--clips 40] [--settle 10] [--without-preload]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clips", type=int, default=40)
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds the settled runs leave the new cluster idle before the batch")
    p.add_argument("--without-preload", action="store_true", help="time only --jobs 2, ray and ray settled")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds: give 1 or more")
    sys.path.insert(0, str(REPO))
    import numpy as np

    from motion_server.animate.fork_server import WORKER_PRELOAD
    from motion_server.bench.animate_batch import _lines, _ray_cli, _run, start_head

    # the local pool's own preload list, minus its fork-server-only first entry
    preload = ",".join(m for m in WORKER_PRELOAD if not m.endswith("fork_server_quiet"))
    runs = {"jobs 2": (None, 0.0), "ray": (False, 0.0), "ray, preload": (True, 0.0),
            "ray, settled": (False, args.settle), "ray, preload, settled": (True, args.settle)}
    if args.without_preload:
        runs = {k: v for k, v in runs.items() if "preload" not in k}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with tempfile.TemporaryDirectory(prefix="talkrig_ray_preload_") as tmp:
        folder = Path(tmp) / "lines"
        folder.mkdir()
        _lines(folder, args.clips, True)
        for k in range(args.rounds):
            order = list(runs.items()) if k % 2 == 0 else list(runs.items())[::-1]
            for label, (pre, settle) in order:
                if pre is not None:
                    env = {name: value for name, value in os.environ.items()
                           if name != "RAY_preload_python_modules"}
                    if pre:
                        env["RAY_preload_python_modules"] = preload
                    r = start_head(env)
                    if r.returncode != 0:
                        print(f"could not start a Ray cluster: {(r.stdout + r.stderr)[-400:]}", file=sys.stderr)
                        return 1
                try:
                    if settle:
                        time.sleep(settle)  # the condition measured (a cluster left idle), not a synchronisation
                    out = Path(tmp) / f"out_{k}_{label.replace(' ', '_').replace(',', '')}"
                    wall, rc, tail = _run(folder, out, ["--jobs", "2"] if pre is None else ["--ray", "auto"])
                finally:
                    if pre is not None:
                        _ray_cli("stop")
                if rc != 0:
                    print(f"{label}: exit {rc}: {tail}", file=sys.stderr)
                    return 1
                times[label].append(wall)
                print(f"round {k} {label}: {wall:.2f} s", flush=True)
    base = float(np.median(times["jobs 2"]))
    out = {label: {"median_s": round(float(np.median(v)), 2), "runs_s": [round(t, 2) for t in v],
                   "vs_jobs_2": round(float(np.median(v)) / base, 3)} for label, v in times.items()}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
