"""`talkrig animate` over a folder of short lines, as a pipeline runs it: one command, motion files only
(``--out '{stem}.csv'``), the default engine with recognition, timed from the command's start to its
end (process start, model loads and the workers' start-up included). Once in this process
(``--jobs 1``), once with two local workers (``--jobs 2``) and once on Ray (``--ray auto``: a local
cluster when none runs), so the speed-ups are measured on the same machine in the same minute."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .audio import speech_of_length
from .context import BenchContext

DESCRIPTION = "talkrig animate over 40 short clips: --jobs 1 vs --jobs 2 vs --ray auto (motion only)"
N_CLIPS = 40
CLIP_S = 3.0


def _clips(folder: Path, sr: int) -> None:
    import soundfile as sf

    audio, _ = speech_of_length(CLIP_S * N_CLIPS, sr)
    n = int(CLIP_S * sr)
    for i in range(N_CLIPS):  # different speech in every clip, as in a dialogue library
        sf.write(folder / f"line{i:03d}.flac", np.asarray(audio[i * n:(i + 1) * n], np.float32), sr)


def _run(folder: Path, out: Path, extra: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "motion_server", "animate", str(folder), "--out",
                        str(out / "{stem}.csv"), *extra], capture_output=True, text=True,
                       env=dict(os.environ, TQDM_DISABLE="1"))
    return time.perf_counter() - t0, r.returncode, (r.stdout + r.stderr)[-1500:]


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="talkrig_bench_batch_") as tmp:
        folder = Path(tmp) / "lines"
        folder.mkdir()
        _clips(folder, ctx.sr)
        runs = {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"], "ray auto": ["--ray", "auto"]}
        walls: dict[str, float] = {}
        for label, extra in runs.items():
            ctx.say(f"animate {N_CLIPS} x {CLIP_S:g} s clips, {label}")
            wall, rc, tail = _run(folder, Path(tmp) / label.replace(" ", "_"), extra)
            row: dict[str, Any] = {"what": "animate-batch", "engine": "default", "setting": label,
                                   "duration_s": CLIP_S * N_CLIPS, "clips": N_CLIPS, "wall_s": round(wall, 2),
                                   "clips_per_s": round(N_CLIPS / wall, 3), "rtf_median": CLIP_S * N_CLIPS / wall,
                                   "cpu_count": os.cpu_count()}
            if rc != 0:
                row["error"] = f"exit {rc}: {tail}"
            else:
                walls[label] = wall
            results.append(row)
        if "jobs 1" in walls and "jobs 2" in walls:
            speed = walls["jobs 1"] / walls["jobs 2"]
            results.append({"what": "animate-batch", "setting": "jobs 2 vs jobs 1", "speedup": round(speed, 3),
                            "goal": ">= 1.6", "pass": speed >= 1.6})
        if "jobs 2" in walls and "ray auto" in walls:
            ratio = walls["ray auto"] / walls["jobs 2"]
            results.append({"what": "animate-batch", "setting": "ray auto vs jobs 2", "time_ratio": round(ratio, 3),
                            "goal": "<= 1.2", "pass": ratio <= 1.2})
    return results
