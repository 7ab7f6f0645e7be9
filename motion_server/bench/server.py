"""Motion server round trip: what the ZeroMQ protocol adds on top of the engine.

For each engine a real ``talkrig serve`` process is started on a free loopback port and
a MotionClient sends the clip as WAV bytes. The server reports how long the engine and the audio decode
took, so ``overhead = round trip - engine time`` is everything a user pays for running the model in a
server instead of in-process: transport both ways, msgpack, result encoding, queue hand-off and audio
decode (``protocol_ms`` leaves the decode out). The first (cold) request per length is timed on its own
(``first_call_s``); ``server_peak_rss_mib`` is the server process's high-water RSS. ``ctx.extra["server"]
= ADDR`` measures a server that is already running instead.
"""

from __future__ import annotations

import io
import socket
import sys
import time
from typing import Any

import numpy as np

from .audio import speech_of_length
from .context import BenchContext
from .timing import peak_rss_mib, spread

DESCRIPTION = "server round trip vs engine time (protocol overhead), first request, ping, server peak RSS"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wav_bytes(x: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    b = io.BytesIO()
    sf.write(b, x, sr, format="WAV", subtype="PCM_16")
    return b.getvalue()


def _round_trip(client: Any, wav: bytes) -> tuple[float, dict[str, float]]:
    """(wall seconds from submit to result, the server's own timing of that job)."""
    t0 = time.perf_counter()
    job = client.submit(wav, progress=False)
    job.wait()
    return time.perf_counter() - t0, job.timing


def _measure(client: Any, wav: bytes, repeats: int, warmup: int) -> dict[str, Any]:
    # The first request for this length is timed on its own: it is what a user waits for once.
    first, _ = _round_trip(client, wav)
    for _ in range(warmup):
        _round_trip(client, wav)
    walls, engine, decode = [], [], []
    for _ in range(repeats):
        wall, timing = _round_trip(client, wav)
        walls.append(wall)
        engine.append(timing["engine_s"])
        decode.append(timing["decode_s"])
    over = [w - e for w, e in zip(walls, engine, strict=True)]
    proto = [o - d for o, d in zip(over, decode, strict=True)]
    return {"first": first, "walls": walls, "engine": engine, "decode": decode, "overhead": over, "protocol": proto}


def _ms(xs: list[float]) -> float:
    return round(float(np.median(xs)) * 1000, 3)


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    from motion_server.client import MotionClient
    from motion_server.client_process import start_local_server

    results: list[dict[str, Any]] = []
    fixed = ctx.extra.get("server")
    for name in ctx.engines if not fixed else ["(running server)"]:
        proc = None
        address = fixed or f"tcp://127.0.0.1:{_free_port()}"
        if not fixed:
            extra = ["--log-level", "warning", "--max-audio-seconds", str(max(ctx.durations) + 1),
                     "--max-message-mb", str(max(64, int(max(ctx.durations) * ctx.sr * 2 / 2**20) + 8))]
            if ctx.device != "auto":
                extra += ["--device", ctx.device]
            if ctx.model:
                extra += ["--model", ctx.model]
            ctx.say(f"server: starting a {name} server on {address}")
            try:
                proc = start_local_server(sys.executable, bind=address, engine=name, extra_args=extra, wait_s=300)
            except Exception as exc:  # one engine that cannot start is reported, the others still run
                results.append({"what": "server", "engine": name, "error": str(exc).splitlines()[0]})
                continue
        try:
            with MotionClient(address, timeout_s=600) as client:
                pings = []
                for _ in range(max(20, ctx.repeats)):
                    pings.append(client.ping())
                for dur in ctx.durations:
                    audio, source = speech_of_length(dur, ctx.sr)
                    wav = _wav_bytes(audio, ctx.sr)
                    ctx.say(f"server {name} {dur:g}s ({len(wav) / 2**20:.1f} MiB WAV)")
                    m = _measure(client, wav, ctx.repeats, ctx.warmup)
                    wall = spread(m["walls"])
                    results.append({
                        "what": "server", "engine": name, "duration_s": dur, "audio": source,
                        "wav_bytes": len(wav), "device": ctx.resolved_device(),
                        "round_trip_median_s": wall["median"], "engine_median_s": float(np.median(m["engine"])),
                        "overhead_median_ms": _ms(m["overhead"]), "overhead_max_ms": round(max(m["overhead"]) * 1000, 3),
                        "protocol_median_ms": _ms(m["protocol"]), "decode_median_ms": _ms(m["decode"]),
                        "ping_median_ms": _ms(pings), "first_call_s": round(m["first"], 4),
                        "server_peak_rss_mib": None if proc is None else peak_rss_mib(proc.pid),
                        "rtf_median": dur / wall["median"], "rtf_min": dur / wall["max"], "rtf_max": dur / wall["min"],
                        "times_s": [round(t, 5) for t in m["walls"]], "repeats": ctx.repeats, "warmup": ctx.warmup,
                    })  # fmt: skip
                    r = results[-1]
                    ctx.say(f"  round trip {r['round_trip_median_s'] * 1000:.1f} ms, engine "
                            f"{r['engine_median_s'] * 1000:.1f} ms, overhead {r['overhead_median_ms']:.1f} ms "
                            f"(decode {r['decode_median_ms']:.1f} ms, protocol {r['protocol_median_ms']:.1f} ms)")
        finally:
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except Exception:
                    proc.kill()
    return results
