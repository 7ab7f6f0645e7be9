"""`talkrig animate` over a folder of short dialogue lines, as a pipeline runs it: one command, motion files
only (``--out '{stem}.csv'``), the default engine, timed from the command's start to its end (process
start, model loads and the workers' start-up included). Once in this process (``--jobs 1``), once with
two local workers (``--jobs 2``) and once on Ray (``--ray auto``: a local cluster when none runs), so the
speed-ups are measured on the same machine in the same minutes. Ray runs twice: starting and stopping its
own local cluster (what one command on a bare machine pays), and joining a cluster already running (what a
farm pays per batch). ``--repeats`` rounds, each running every setting once (interleaved, so the box's
drift over minutes does not favour one); the table has the medians.

Two kinds of library: **scripted** (every line has its script as ``<stem>.txt``, as a game's dialogue
library does: aligned, no recognition) and **unscripted** (no text: Whisper recognises each line, which
pads every clip to a 30 s window, so it costs ~2 s per short line and already uses both cores in one
process); the unscripted library also runs ``--jobs 1 --language en`` (recognition without Whisper's
language check, a second pass over a 30 s window per line). The lines are spoken by the synthetic voices
(flite/espeak) with their text, 40 by default (``ctx.extra["clips"]``)."""

from __future__ import annotations

import contextlib
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


def _ray_cli(*args: str, timeout: float = 120, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ray.scripts.scripts", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def start_head(env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``ray start --head``: a one-node cluster on this machine's cores, as the bench times Ray on."""
    return _ray_cli("start", "--head", f"--num-cpus={os.cpu_count() or 1}", "--include-dashboard=false",
                    "--disable-usage-stats", env=env)


class _RunningCluster:
    """A one-node Ray cluster started before the timed command, as a render farm has one running: what
    ``--ray auto`` then costs is joining it, not starting and stopping it. Stopped after the runs (only
    when this bench started it)."""

    def __enter__(self) -> str | None:
        r = start_head()
        self.started = r.returncode == 0
        return None if self.started else (r.stdout + r.stderr)[-600:]

    def __exit__(self, *exc: object) -> None:
        if self.started:
            _ray_cli("stop")


RUNS = {"jobs 1": ["--jobs", "1"], "jobs 2": ["--jobs", "2"], "ray auto": ["--ray", "auto"],
        "ray auto, running cluster": ["--ray", "auto"]}
# unscripted lines once more with their language named: no language check before recognition
NAMED = {"jobs 1, language en": ["--jobs", "1", "--language", "en"]}


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    n = int(ctx.extra.get("clips", 40))
    results: list[dict[str, Any]] = []
    which = str(ctx.extra.get("library", "both"))
    for library, scripted in (("scripted", True), ("unscripted", False)):
        if which not in ("both", library):
            continue
        with tempfile.TemporaryDirectory(prefix="talkrig_bench_batch_") as tmp:
            folder = Path(tmp) / "lines"
            folder.mkdir()
            audio_s = _lines(folder, n, scripted)
            runs = RUNS if scripted else {**RUNS, **NAMED}
            ctx.say(f"animate {n} {library} lines ({audio_s:.0f} s of audio): {', '.join(runs)}, interleaved, "
                    f"{ctx.repeats} round(s)")
            # interleaved: each round runs every setting once (in reverse every other round), so a box whose
            # speed drifts over minutes slows all of them alike instead of whichever ran last
            times: dict[str, list[float]] = {label: [] for label in runs}
            errors: dict[str, str] = {}
            for k in range(ctx.repeats):
                order = list(runs.items()) if k % 2 == 0 else list(runs.items())[::-1]  # no fixed position
                for label, extra in order:
                    if label in errors:
                        continue
                    cluster = _RunningCluster() if label.endswith("running cluster") else contextlib.nullcontext()
                    with cluster as failed:
                        if failed:
                            errors[label] = f"could not start a Ray cluster for this run (one already running?): {failed}"
                            continue
                        out = Path(tmp) / f"{label.replace(' ', '_').replace(',', '')}_{k}"
                        wall, rc, tail = _run(folder, out, extra)
                    if rc != 0:
                        errors[label] = f"exit {rc}: {tail}"
                        continue
                    times[label].append(wall)
            walls: dict[str, float] = {}
            for label in runs:
                row: dict[str, Any] = {"what": "animate-batch", "engine": "default", "setting": f"{library}, {label}",
                                       "duration_s": round(audio_s, 2), "clips": n, "cpu_count": os.cpu_count()}
                if label in errors:
                    row["error"] = errors[label]
                else:
                    wall = float(np.median(times[label]))
                    walls[label] = wall
                    row.update({"wall_s": round(wall, 2), "wall_runs_s": [round(t, 2) for t in times[label]],
                                "clips_per_s": round(n / wall, 3), "rtf_median": audio_s / wall})
                results.append(row)
            if "jobs 1" in walls and "jobs 2" in walls:
                speed = walls["jobs 1"] / walls["jobs 2"]
                pairs = [a / b for a, b in zip(times["jobs 1"], times["jobs 2"], strict=False)]
                results.append({"what": "animate-batch", "setting": f"{library}: jobs 2 vs jobs 1",
                                "speedup": round(speed, 3), "round_speedups": [round(x, 3) for x in pairs],
                                "goal": ">= 1.6", "pass": speed >= 1.6})
            for label in NAMED:
                if "jobs 1" in walls and label in walls:
                    results.append({"what": "animate-batch", "setting": f"{library}: {label} vs jobs 1",
                                    "speedup": round(walls["jobs 1"] / walls[label], 3)})
            for label in ("ray auto", "ray auto, running cluster"):
                if "jobs 2" in walls and label in walls:
                    ratio = walls[label] / walls["jobs 2"]
                    results.append({"what": "animate-batch", "setting": f"{library}: {label} vs jobs 2",
                                    "time_ratio": round(ratio, 3), "goal": "<= 1.2", "pass": ratio <= 1.2})
    return results
