"""A take with no transcript, end to end: recognition + alignment + generation through the pipeline
(what `talkrig generate CLIP` does by default), split into its stages, and the recogniser's one load."""

from __future__ import annotations

import time
from typing import Any

from motion_server.engine.base import GenerateOptions
from motion_server.engine.registry import create_engine

from .audio import speech_of_length
from .context import BenchContext
from .timing import measure, peak_rss_mib, reset_peak_rss, rss_mib

DESCRIPTION = "no transcript given: Whisper recognition + pocketsphinx alignment + generation, per stage"


def _stages(pipe: Any, audio: Any, sr: int) -> dict[str, float]:
    """One call with the stage boundaries read off the progress stages."""
    marks: dict[str, float] = {}
    start = time.perf_counter()

    def progress(frac: float, stage: str) -> None:
        marks.setdefault(stage, time.perf_counter() - start)

    motion = pipe.generate(audio, sr, GenerateOptions(), progress)
    total = time.perf_counter() - start
    info = motion.meta.get("transcript", {})
    align_at = marks.get("aligning")
    gen_at = min((t for s, t in marks.items() if s not in ("transcribing", "aligning")), default=total)
    return {"total_s": total, "asr_s": float(info.get("seconds", 0.0)),
            "align_s": (gen_at - align_at) if align_at is not None else 0.0,
            "generate_s": total - gen_at, "transcript_used": bool(info.get("used"))}


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    from motion_server.pipeline import MotionPipeline, default_recogniser

    results = []
    for name in ctx.engines:
        reset_peak_rss()
        kw: dict[str, Any] = {"device": ctx.resolved_device()}
        if ctx.model:
            kw["model"] = ctx.model
        pipe = MotionPipeline(create_engine(name, **kw), default_recogniser())
        if not pipe.reads_phones:
            results.append({"what": "transcribe", "engine": name, "error": f"the {name} engine reads no phones"})
            continue
        t0 = time.perf_counter()
        pipe.recogniser.load()
        load_s = time.perf_counter() - t0
        for dur in ctx.durations:
            audio, source = speech_of_length(dur, ctx.sr)
            ctx.say(f"transcribe+generate {name} {dur:g}s")
            rss_before = rss_mib()
            first = _stages(pipe, audio, ctx.sr)
            runs: list[dict[str, float]] = []

            def once(p=pipe, a=audio, out=runs) -> None:
                out.append(_stages(p, a, ctx.sr))

            m = measure(once, ctx.repeats, ctx.warmup)
            last = runs[-1] if runs else first
            results.append({
                "what": "transcribe", "engine": name, "setting": "no transcript (recognised)", "duration_s": dur,
                "audio": source, "device": ctx.resolved_device(),
                "rtf_median": dur / m["median"], "rtf_min": dur / m["max"], "rtf_max": dur / m["min"],
                "wall_median_s": m["median"], "wall_min_s": m["min"], "wall_max_s": m["max"],
                "times_s": m["times_s"], "repeats": ctx.repeats, "warmup": ctx.warmup,
                "recogniser_load_s": round(load_s, 4), "recogniser_loads": pipe.recogniser.loads,
                "first_call_s": round(first["total_s"], 4),
                "stages_s": {k: round(v, 4) for k, v in last.items() if k.endswith("_s")},
                "transcript_used": last["transcript_used"],
                "rss_before_mib": rss_before, "peak_rss_mib": m["peak_rss_mib"] or peak_rss_mib(),
            })
        pipe.close()
    return results
