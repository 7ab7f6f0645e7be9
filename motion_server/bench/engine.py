"""Generation speed: seconds of animation per wall second (real-time factor), latency and memory."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from motion_server.engine.base import GenerateOptions
from motion_server.engine.registry import create_engine

from .audio import speech_of_length
from .context import BenchContext
from .timing import measure, peak_rss_mib, reset_peak_rss, rss_mib

DESCRIPTION = "engine.generate real-time factor, first-call latency, time to first progress, peak memory"


def _make_engine(name: str, ctx: BenchContext) -> Any:
    """Every engine constructor takes ``device=`` / ``model=`` (CPU-only engines accept and ignore them)."""
    kw: dict[str, Any] = {"device": ctx.resolved_device()}
    if ctx.model:
        kw["model"] = ctx.model
    return create_engine(name, **kw)


def _timed_call(engine: Any, audio: Any, sr: int, opts: GenerateOptions) -> tuple[float, float | None]:
    """(wall seconds, seconds until the first progress report above 0, or None if none came)."""
    start = time.perf_counter()
    seen: list[float] = []

    def progress(frac: float, stage: str) -> None:
        if frac > 0 and not seen:
            seen.append(time.perf_counter() - start)

    engine.generate(audio, sr, opts, progress)
    return time.perf_counter() - start, (seen[0] if seen else None)


def _settings_for(engine: Any, ctx: BenchContext) -> list[dict[str, Any]]:
    """Sampler/steps variants matter only to engines that advertise those options."""
    opts = set(engine.info().get("options", []) or [])
    if opts & {"steps", "sampler"}:
        return ctx.settings
    return [{}]


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    results = []
    for name in ctx.engines:
        reset_peak_rss()
        t0 = time.perf_counter()
        engine = _make_engine(name, ctx)
        load_s = time.perf_counter() - t0
        # Where it really ran: a CPU-only engine stays on the CPU even when --device picked CUDA.
        device = str(engine.info().get("device") or ctx.resolved_device())
        for setting in _settings_for(engine, ctx):
            opts = replace(GenerateOptions(), **setting)
            for dur in ctx.durations:
                audio, source = speech_of_length(dur, ctx.sr)
                ctx.say(f"engine {name} {setting or 'default'} {dur:g}s")
                rss_before = rss_mib()
                # The first call on this engine for this length is timed separately: cold caches,
                # lazy loading, torch kernel selection are what a user waits for once.
                first_call_s, ttfp = _timed_call(engine, audio, ctx.sr, opts)
                m = measure(lambda e=engine, a=audio, o=opts: _timed_call(e, a, ctx.sr, o), ctx.repeats, ctx.warmup)
                results.append({
                    "what": "engine", "engine": name, "setting": setting or "default",
                    "device": device, "duration_s": dur, "audio": source,
                    "rtf_median": dur / m["median"], "rtf_min": dur / m["max"], "rtf_max": dur / m["min"],
                    "wall_median_s": m["median"], "wall_min_s": m["min"], "wall_max_s": m["max"],
                    "wall_iqr_s": m["iqr"], "times_s": m["times_s"], "repeats": ctx.repeats,
                    "warmup": ctx.warmup, "engine_load_s": round(load_s, 4), "first_call_s": round(first_call_s, 4),
                    "time_to_first_progress_s": None if ttfp is None else round(ttfp, 4),
                    "rss_before_mib": rss_before, "peak_rss_mib": m["peak_rss_mib"] or peak_rss_mib(),
                    "gpu_peak_mib": m["gpu_peak_mib"],
                })
    return results
