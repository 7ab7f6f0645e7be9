"""`talkrig animate` over a folder of short dialogue lines, as a pipeline runs it: one command, motion files
only (``--out '{stem}.csv'``), the default engine, timed from the command's start to its end (process
start, model loads and the workers' start-up included). Once in this process (``--jobs 1``), once with
two local workers (``--jobs 2``) and once on Ray (``--ray auto``: a local cluster when none runs), so the
speed-ups are measured on the same machine in the same minutes.

Two kinds of library: **scripted** (every line has its script as ``<stem>.txt``, as a game's dialogue
library does: aligned, no recognition) and **unscripted** (no text: Whisper recognises each line, which
pads every clip to a 30 s window, so it costs ~2 s per short line and already uses both cores in one
process). The lines are spoken by the synthetic voices (flite/espeak) with their text, 40 by default
(``ctx.extra["clips"]``)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from .context import BenchContext

DESCRIPTION = "talkrig animate over 40 short lines: --jobs 1 vs --jobs 2 vs --ray auto (motion only)"
VOICES = ("flite:slt", "flite:rms", "espeak:en-us", "flite:awb")


def _lines(folder: Path, n: int, scripted: bool) -> float:
    """``n`` short spoken lines (+ their .txt when ``scripted``); returns the seconds of audio."""
    import soundfile as sf

    from motion_server.synth.speech import synthesize
    from motion_server.synth.text import load_sentences

    sentences = [s for s in load_sentences("en") if 4 <= len(s.text.split()) <= 12]
    total = 0.0
    for i in range(n):
        text = sentences[(i * 37) % len(sentences)].text
        speech = synthesize(text, VOICES[i % len(VOICES)])
        sf.write(folder / f"line{i:03d}.flac", np.asarray(speech.audio, np.float32), speech.sr)
        total += speech.audio.size / speech.sr
        if scripted:
            (folder / f"line{i:03d}.txt").write_text(text + "\n")
    return total


def _run(folder: Path, out: Path, extra: list[str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "motion_server", "animate", str(folder), "--out",
                        str(out / "{stem}.csv"), *extra], capture_output=True, text=True,
                       env=dict(os.environ, TQDM_DISABLE="1"))
    return time.perf_counter() - t0, r.returncode, (r.stdout + r.stderr)[-1500:]


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    n = int(ctx.extra.get("clips", 40))
    results: list[dict[str, Any]] = []
    for library, scripted in (("scripted", True), ("unscripted", False)):
        with tempfile.TemporaryDirectory(prefix="talkrig_bench_batch_") as tmp:
            folder = Path(tmp) / "lines"
            folder.mkdir()
            audio_s = _lines(folder, n, scripted)
            walls: dict[str, float] = {}
            for label, extra in {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"],
                                 "ray auto": ["--ray", "auto"]}.items():
                ctx.say(f"animate {n} {library} lines ({audio_s:.0f} s of audio), {label}")
                wall, rc, tail = _run(folder, Path(tmp) / label.replace(" ", "_"), extra)
                row: dict[str, Any] = {"what": "animate-batch", "engine": "default", "setting": f"{library}, {label}",
                                       "duration_s": round(audio_s, 2), "clips": n, "wall_s": round(wall, 2),
                                       "clips_per_s": round(n / wall, 3), "rtf_median": audio_s / wall,
                                       "cpu_count": os.cpu_count()}
                if rc != 0:
                    row["error"] = f"exit {rc}: {tail}"
                else:
                    walls[label] = wall
                results.append(row)
            if "jobs 1" in walls and "jobs 2" in walls:
                speed = walls["jobs 1"] / walls["jobs 2"]
                results.append({"what": "animate-batch", "setting": f"{library}: jobs 2 vs jobs 1",
                                "speedup": round(speed, 3), "goal": ">= 1.6", "pass": speed >= 1.6})
            if "jobs 2" in walls and "ray auto" in walls:
                ratio = walls["ray auto"] / walls["jobs 2"]
                results.append({"what": "animate-batch", "setting": f"{library}: ray auto vs jobs 2",
                                "time_ratio": round(ratio, 3), "goal": "<= 1.2", "pass": ratio <= 1.2})
    return results
