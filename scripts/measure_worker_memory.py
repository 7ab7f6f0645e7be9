"""What ``--jobs N`` workers cost in memory and start-up: forked from the fork server that imported torch
once (how ``talkrig animate`` starts them) against spawned fresh (each importing torch itself, as before
session 9). Each way: a pool of N workers animates 2N short lines with the bundled model, then the
workers' proportional set size (PSS: shared pages split between the processes that share them) is read
from /proc. Linux only; JSON on stdout.

    python scripts/measure_worker_memory.py [--workers 2] [--audio FOLDER]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import multiprocessing.forkserver
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _lines(folder: Path, n: int) -> list[Path]:
    import numpy as np
    import soundfile as sf

    from motion_server.synth.speech import synthesize

    out = []
    for i in range(n):
        speech = synthesize("The quick brown fox jumps over the lazy dog.", ("flite:slt", "espeak:en-us")[i % 2])
        out.append(folder / f"line{i}.flac")
        sf.write(out[-1], np.asarray(speech.audio, np.float32), speech.sr)
    return out


def _measure(how: str, workers: int, files: list[Path]) -> dict:
    from motion_server.animate import workers as w
    from motion_server.animate.fork_server import start_worker_imports, worker_context
    from motion_server.engine.base import GenerateOptions

    if how == "fork server":
        start_worker_imports()  # as talkrig animate starts it
    ctx = worker_context() if how == "fork server" else multiprocessing.get_context("spawn")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=w._init_worker,
                             initargs=(1, dict(os.environ))) as pool:
        futures = [pool.submit(w.motion_task, w.EngineSpec("diffusion"), w.MotionTask(i, str(f), GenerateOptions()))
                   for i, f in enumerate(files)]
        errors = [f.result().error for f in futures]
        wall = time.perf_counter() - t0
        pids = [p.pid for p in pool._processes.values()]
        pss = [_mib(p, "Pss") for p in pids]
        rss = [_mib(p, "Rss") for p in pids]
        # the fork server holds the pages its workers share: counted with them
        server = getattr(multiprocessing.forkserver._forkserver, "_forkserver_pid", None) if how == "fork server" else None
        server_pss = _mib(server, "Pss") if server else 0.0
    return {"workers": how, "start_method": ctx.get_start_method(), "lines": len(files),
            "errors": [e for e in errors if e], "wall_s": round(wall, 2),
            "worker_pss_mib": [round(x) for x in pss], "worker_rss_mib": [round(x) for x in rss],
            "fork_server_pss_mib": round(server_pss), "pss_total_mib": round(sum(pss) + server_pss)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="talkrig_worker_mem_") as tmp:
        files = _lines(Path(tmp), 2 * args.workers)
        rows = [_measure(how, args.workers, files) for how in ("fork server", "spawned")]
    print(json.dumps({"what": "animate --jobs workers: memory and start-up", "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
