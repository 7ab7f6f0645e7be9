"""Batched serving: N concurrent clients vs the same N jobs one after another, on one real server.

A ``talkrig serve --engine diffusion`` process (the bundled model, or ``--model``) on a free loopback
port. Each round sends N clips (``min(--durations)`` seconds each, default 10 s; different cuts of real
speech, different seeds) first one after another from one client (each job alone in the server: the
solo results), then all at once from N clients in threads. ``throughput_ratio`` = sequential wall time /
concurrent wall time (medians over ``--repeats`` rounds); ``solo_equal`` says whether every concurrent
result is bit-identical to that job's solo result (``max_abs_diff`` otherwise); ``cpu_ratio`` compares the
server's CPU seconds for the two (what batching saves in compute, even on a loaded machine whose wall
times are noisy). ``batching`` is the
server's own account (forwards, largest batch, most jobs in one forward). ``--clients 1,8,32``
(``ctx.extra["clients"]``) gives one row per N on the same server, with clips per second and the real-time
factor of all N together; ``ctx.extra["max_batch"]`` sets the server's ``--max-batch``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np

from .audio import speech_of_length
from .context import BenchContext
from .server import _free_port, _wav_bytes
from .timing import cpu_seconds, peak_rss_mib

DESCRIPTION = "N concurrent diffusion jobs vs the same N one after another: throughput ratio, solo equality"


def _clips(n: int, seconds: float, sr: int) -> list[bytes]:
    src, _ = speech_of_length(seconds * 2 + n * 0.7, sr)
    hop = int(0.7 * sr)
    return [_wav_bytes(src[k * hop: k * hop + int(seconds * sr)], sr) for k in range(n)]


def _concurrent(address: str, wavs: list[bytes]) -> tuple[float, list[Any]]:
    from motion_server.client import MotionClient

    out: list[Any] = [None] * len(wavs)
    errors: list[BaseException] = []
    clients = [MotionClient(address, timeout_s=600) for _ in wavs]
    go = threading.Barrier(len(wavs) + 1)

    def one(i: int) -> None:
        try:
            go.wait()
            out[i] = clients[i].generate(wavs[i], {"seed": i})
        except BaseException as e:  # reported after the round
            errors.append(e)

    try:
        for c in clients:
            c.hello()  # connected before the clock starts
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(wavs))]
        for t in threads:
            t.start()
        go.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        for c in clients:
            c.close()
    if errors:
        raise errors[0]
    return wall, out


def _round_set(ctx: BenchContext, proc: Any, address: str, n: int, seconds: float) -> dict[str, Any]:
    """``ctx.repeats`` rounds of N jobs one after another, then all at once; medians and equality."""
    from motion_server.client import MotionClient

    wavs = _clips(n, seconds, ctx.sr)
    seq_walls, conc_walls, diffs = [], [], []
    seq_cpu, conc_cpu = [], []  # the server's CPU seconds: what batching saves, whatever else loads the machine
    with MotionClient(address, timeout_s=600) as client:
        for _ in range(max(ctx.warmup, 1)):  # the first forwards pay one-off costs
            client.generate(wavs[0], {"seed": 0})
        for r in range(ctx.repeats):
            c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
            solo = [client.generate(w, {"seed": i}) for i, w in enumerate(wavs)]
            seq_walls.append(time.perf_counter() - t0)
            c1 = cpu_seconds(proc.pid)
            wall, together = _concurrent(address, wavs)
            conc_walls.append(wall)
            c2 = cpu_seconds(proc.pid)
            if None not in (c0, c1, c2):
                seq_cpu.append(c1 - c0)
                conc_cpu.append(c2 - c1)
            diffs.append(max(max(float(np.abs(a.weights - b.weights).max()), float(np.abs(a.head - b.head).max()))
                             for a, b in zip(solo, together, strict=True)))
            ctx.say(f"  round {r + 1}: {n} x {seconds:g} s one after another {seq_walls[-1]:.2f} s, "
                    f"concurrently {wall:.2f} s (ratio {seq_walls[-1] / wall:.2f}), max |diff| {diffs[-1]:g}")
        status = client.status()
    seq, conc = float(np.median(seq_walls)), float(np.median(conc_walls))
    audio_s = n * seconds
    return {
        "what": "server-batch", "engine": "diffusion", "setting": f"{n} clients", "clients": n, "duration_s": seconds,
        "device": ctx.resolved_device(), "sequential_median_s": seq, "concurrent_median_s": conc,
        "throughput_ratio": seq / conc, "solo_equal": max(diffs) == 0.0, "max_abs_diff": max(diffs),
        "server_cpu_sequential_s": [round(t, 3) for t in seq_cpu], "server_cpu_concurrent_s": [round(t, 3) for t in conc_cpu],
        "cpu_ratio": float(np.median(seq_cpu) / np.median(conc_cpu)) if seq_cpu else None,
        "sequential_s": [round(t, 4) for t in seq_walls], "concurrent_s": [round(t, 4) for t in conc_walls],
        "batching": status.get("batching"),
        # the table's real-time factor: audio seconds generated per wall second, all clients together
        "clips_per_s": n / conc, "rtf_median": audio_s / conc, "rtf_min": audio_s / max(conc_walls),
        "rtf_max": audio_s / min(conc_walls), "repeats": ctx.repeats, "warmup": ctx.warmup,
    }  # fmt: skip


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    from motion_server.client_process import start_local_server

    clients = ctx.extra.get("clients", 8)  # `talkrig bench --clients` has checked the list
    counts = [int(clients)] if isinstance(clients, int) else [int(n) for n in clients]
    seconds = min(ctx.durations)
    address = f"tcp://127.0.0.1:{_free_port()}"
    # every client's job runs at once (the server's default is 8), so 32 clients measure a batch of 32
    most = max(8, *counts)
    extra = ["--log-level", "warning", "--no-transcribe", "--max-audio-seconds", str(seconds + 1),
             "--max-client-jobs", str(most), "--max-running", str(most)]
    if ctx.device != "auto":
        extra += ["--device", ctx.device]
    if ctx.model:
        extra += ["--model", ctx.model]
    if ctx.extra.get("max_batch"):
        extra += ["--max-batch", str(int(ctx.extra["max_batch"]))]
    ctx.say(f"server-batch: starting a diffusion server on {address}")
    proc = start_local_server(sys.executable, bind=address, engine="diffusion", extra_args=extra, wait_s=300)
    try:
        rows = [_round_set(ctx, proc, address, n, seconds) for n in counts]
        peak = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except Exception:
            proc.kill()
    for row in rows:
        row["server_peak_rss_mib"] = peak  # the server process's peak over all the rounds
    return rows
