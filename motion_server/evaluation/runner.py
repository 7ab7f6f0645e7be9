"""Run an engine and the baselines over evaluation clips and score every output."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from motion_server.audio.loudness import audio_envelope
from motion_server.engine.base import Cancelled, CancelToken, GenerateOptions
from motion_server.engine.registry import create_engine
from rig_mapping import FaceMotion

from . import metrics, motion_stats
from .baselines import BASELINES
from .suites import EvalClip

GROUND_TRUTH = "ground_truth"


@dataclass
class System:
    """One scored column: a label, an engine instance and how its options differ from the defaults."""

    label: str
    engine: Any
    overrides: dict[str, Any]
    uses_transcript: bool = True


def build_systems(engine_name: str, engine_kwargs: dict[str, Any] | None = None,
                  baselines: Iterable[str] = tuple(BASELINES)) -> list[System]:
    systems = [System(engine_name, create_engine(engine_name, **(engine_kwargs or {})), {})]
    for label in baselines:
        name, overrides = BASELINES[label]
        if name == engine_name and not overrides:
            continue  # the evaluated engine already is this baseline
        systems.append(System(label, create_engine(name), dict(overrides),
                              uses_transcript=overrides.get("transcript", True) is not None))
    return systems


def score(clip: EvalClip, motion: FaceMotion, gen_seconds: float) -> dict[str, Any]:
    row: dict[str, Any] = {"gen_seconds": round(gen_seconds, 4), "frames": motion.n_frames}
    if clip.phones:
        row.update(metrics.phone_metrics(motion, clip.phones, clip.audio, clip.sr))
    else:
        from .geometry import lip_gap

        row["lag_frames"] = metrics.lag_frames(
            lip_gap(motion), audio_envelope(clip.audio, clip.sr, motion.fps, motion.n_frames))
    row.update(metrics.motion_metrics(motion))
    # head/blink/brow/jaw statistics in the real references' terms: a block of its own (not averaged by
    # means(); suites summarise it as medians over clips, see motion_stats.median_over_clips)
    row["motion_stats"] = motion_stats.motion_stats(motion)
    # Engines that generate in windows list where each window starts (frame indices) in meta.
    bounds = motion.meta.get("window_boundaries") if isinstance(motion.meta, dict) else None
    if bounds:
        row["seam"] = metrics.seam_size(motion, [int(b) for b in bounds])
        row["seam_control"] = metrics.seam_control(motion, [int(b) for b in bounds])
    if clip.gt is not None:
        row.update(metrics.ground_truth_metrics(motion, clip.gt))
    return row


def run_clip(clip: EvalClip, systems: list[System], base: GenerateOptions,
             cancel: CancelToken | None = None, diversity_seeds: int = 1) -> list[dict[str, Any]]:
    """Generate with every system and score. ``diversity_seeds`` > 1 also runs the evaluated engine
    (the first system) with that many seeds and reports their mean pairwise distance."""
    rows = []
    for k, s in enumerate(systems):
        opts = replace(base, transcript=clip.text, **s.overrides) if s.uses_transcript else replace(
            base, **s.overrides)
        row: dict[str, Any] = {"clip": clip.name, "system": s.label, "duration_s": round(clip.duration, 3),
                               "phones_source": clip.phones_source, "n_phones": len(clip.phones or [])}
        if clip.notes:
            row["notes"] = list(clip.notes)
        t0 = time.perf_counter()
        try:
            motion = s.engine.generate(clip.audio, clip.sr, opts, None, cancel)
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # one clip an engine fails on is recorded; the evaluation goes on
            row["error"] = f"{type(exc).__name__}: {exc}"
            rows.append(row)
            continue
        dt = time.perf_counter() - t0
        row.update(score(clip, motion, dt))
        row.update(_recognition_columns(motion, clip.text))
        if k == 0 and diversity_seeds > 1:
            others = [s.engine.generate(clip.audio, clip.sr, replace(opts, seed=opts.seed + i), None, cancel)
                      for i in range(1, diversity_seeds)]
            row["diversity"] = metrics.diversity([motion, *others])
            row["head_seed_difference"] = metrics.head_seed_difference([motion, *others])
            # lip sync must not depend on the seed: the next seed's closure, so a suite's mean closure can
            # be compared across seeds (one clip's few bilabials flip by a whole 1/n)
            if clip.phones:
                from .geometry import lip_gap

                other = metrics.bilabial_closure_rate(lip_gap(others[0]), clip.phones, others[0].fps)
                if other is not None:
                    row["bilabial_closure_next_seed"] = float(other)
        rows.append(row)
    if clip.gt is not None:
        # the training targets' own statistics (jitter, head motion, blinks, phone metrics): the range
        # a generated motion should stay within
        truth = {"clip": clip.name, "system": GROUND_TRUTH, "duration_s": round(clip.duration, 3),
                 "phones_source": clip.phones_source, "n_phones": len(clip.phones or [])}
        truth.update(score(replace(clip, gt=None), clip.gt, 0.0))
        truth.pop("gen_seconds", None)
        rows.append(truth)
    return rows


def _recognition_columns(motion: FaceMotion, reference: str | None) -> dict[str, Any]:
    """For a take whose transcript was recognised: whether it was used, and its word errors against the
    clip's own transcript (the suite's word error rate is their sum over the reference words)."""
    info = motion.meta.get("transcript") if isinstance(motion.meta, dict) else None
    if not isinstance(info, dict) or info.get("source") != "recognised":
        return {}
    out: dict[str, Any] = {"transcript_used": int(bool(info.get("used"))), "recognised_language": info.get("language"),
                           "recognised_text": info.get("text", "")}
    if reference:
        from .wer import word_errors

        out["asr_word_errors"], out["asr_reference_words"] = word_errors(reference, info.get("text", ""))
    return out


# Row fields that are labels, not metrics.
_NOT_METRICS = frozenset({"clip", "system", "phones_source", "notes", "error", "recognised_language",
                          "recognised_text", "motion_stats"})


def means(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per system: mean of every numeric metric over the clips where it is defined, the clip count and
    how many clips the system failed on."""
    out: dict[str, dict[str, Any]] = {}
    for system in dict.fromkeys(r["system"] for r in rows):
        sub = [r for r in rows if r["system"] == system]
        keys: list[str] = []
        for r in sub:
            keys += [k for k in r if k not in keys and k not in _NOT_METRICS]
        agg: dict[str, Any] = {"clips": len(sub), "failed": sum("error" in r for r in sub)}
        ref_words = sum(int(r.get("asr_reference_words", 0)) for r in sub)
        if ref_words:
            agg["word_error_rate"] = round(sum(int(r.get("asr_word_errors", 0)) for r in sub) / ref_words, 4)
        for k in keys:
            vals = [float(r[k]) for r in sub if isinstance(r.get(k), int | float) and math.isfinite(float(r[k]))]
            agg[k] = round(sum(vals) / len(vals), 5) if vals else None
        out[system] = agg
    return out


def motion_stat_medians(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per system: every motion statistic's median over the clips (blink rate pooled)."""
    return {system: motion_stats.median_over_clips(r["motion_stats"] for r in rows
                                                   if r["system"] == system and r.get("motion_stats"))
            for system in dict.fromkeys(r["system"] for r in rows)}
