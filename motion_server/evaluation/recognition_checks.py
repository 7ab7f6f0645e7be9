"""Checks for automatic transcription on every shared recording (``talkrig eval --suite recognition``).

Each clip is animated twice with the same seed through the pipeline a user gets: with recognition (the
default: no transcript given) and with ``--no-transcribe``. Then:
- languages other than English (manifest language known and not ``en``): no English transcript may be
  used, and the motion may be no worse than without recognition (lip-gap vs loudness correlation);
- clips with a manifest transcript (English): bilabial closure at its aligned phones no worse than
  without recognition;
- singing, whispered and laughing clips without one: lip-gap vs loudness correlation no worse, measured
  outside the recognised /p b m/ windows (a closure the transcript adds lowers the correlation with
  loudness by design, so counting those frames would score every right closure as damage);
- every clip: finite motion in range;
- noise: the narrative clip and its three noisy versions, recognition on, scored at the clean clip's
  bilabials: each noisy version within 0.10 closure of the clean one.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from motion_server.audio.io import load_audio
from motion_server.audio.loudness import audio_envelope
from motion_server.engine.base import GenerateOptions
from motion_server.options import SAMPLE_RATE

from .geometry import lip_gap
from .metrics import bilabial_closure_rate, pearson
from .robustness import CLEAN, NOISE_TOLERANCE, NOISY, noise_check

SR = SAMPLE_RATE
NO_WORSE = 0.05  # closure or correlation may drop by at most this (seed-level noise) to count as no worse


def _finite(m: Any) -> bool:
    return bool(np.isfinite(m.weights).all() and np.isfinite(m.head).all() and m.weights.min() >= 0
                and m.weights.max() <= 1 and np.abs(m.head[:, :3]).max() <= 1.0)


def _corr(m: Any, audio: np.ndarray) -> float:
    return float(pearson(lip_gap(m), audio_envelope(audio, SR, m.fps, m.n_frames)))


_SPECIAL_KINDS = ("singing", "whisper", "laughter")


def _masked_corr(m: Any, audio: np.ndarray, keep: np.ndarray) -> float:
    gap = lip_gap(m)
    env = audio_envelope(audio, SR, m.fps, m.n_frames)
    n = min(len(gap), len(env), len(keep))
    k = keep[:n]
    return float(pearson(gap[:n][k], env[:n][k])) if k.sum() > 10 else float("nan")


def _outside_recognised_closures(text: str, audio: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    from motion_server.align import AlignError, align_transcript
    from motion_server.performer.coarticulation import bilabial_windows

    try:
        phones = align_transcript(audio, SR, text)
    except AlignError:
        return np.ones(n_frames, bool)
    return bilabial_windows(phones, n_frames, fps) <= 0


def clip_check(pipeline: Any, path: Path, entry: dict[str, Any], base: GenerateOptions) -> dict[str, Any]:
    audio = load_audio(path, sr=SR)
    on = pipeline.generate(audio, SR, replace(base, transcribe=True))
    off = pipeline.generate(audio, SR, replace(base, transcribe=False))
    info = on.meta.get("transcript", {})
    english = entry.get("language") == "en"
    row: dict[str, Any] = {
        "language": entry.get("language"), "kind": entry.get("kind", ""), "detected": info.get("language"),
        "used": bool(info.get("used")), "text": info.get("text", ""), "reason": info.get("reason", ""),
        "finite": _finite(on) and _finite(off), "corr_on": round(_corr(on, audio), 4),
        "corr_off": round(_corr(off, audio), 4),
    }
    if english and entry.get("transcript"):
        from motion_server.align import AlignError, align_transcript

        try:
            phones = align_transcript(audio, SR, entry["transcript"])
        except AlignError:
            phones = None
        if phones:
            row["closure_on"] = bilabial_closure_rate(lip_gap(on), phones, on.fps)
            row["closure_off"] = bilabial_closure_rate(lip_gap(off), phones, off.fps)
    known_other = entry.get("language") not in ("en", None) and "?" not in str(entry.get("language"))
    special = any(k in str(entry.get("kind", "")) for k in _SPECIAL_KINDS)
    if row.get("closure_on") is not None and row.get("closure_off") is not None:
        row["criterion"] = "closure"
        no_worse = row["closure_on"] >= row["closure_off"] - NO_WORSE
    elif special or not english:
        row["criterion"] = "loudness correlation"
        if row["used"]:
            keep = _outside_recognised_closures(row["text"], audio, on.n_frames, on.fps)
            row["corr_on_outside_closures"] = round(_masked_corr(on, audio, keep), 4)
            row["corr_off_outside_closures"] = round(_masked_corr(off, audio, keep), 4)
            a, b = row["corr_on_outside_closures"], row["corr_off_outside_closures"]
        else:
            a, b = row["corr_on"], row["corr_off"]
        no_worse = not (math.isfinite(a) and math.isfinite(b)) or a >= b - NO_WORSE
    else:
        row["criterion"] = "none (English speech without a reference transcript: reported only)"
        no_worse = True
    row["no_worse"] = bool(no_worse)
    row["english_forced"] = known_other and row["used"]
    row["ok"] = row["finite"] and row["no_worse"] and not row["english_forced"]
    return row


def run_recognition_suite(pipeline: Any, shared_dir: Path, base: GenerateOptions,
                          limit: int | None = None) -> dict[str, Any]:
    from .suites import shared_speech_dir

    d = shared_speech_dir(Path(shared_dir))
    entries = json.loads((d / "MANIFEST.json").read_text(encoding="utf-8"))["clips"][:limit]
    rows = {e["file"]: clip_check(pipeline, d / e["file"], e, base) for e in entries}
    other = {f: r for f, r in rows.items() if r["language"] not in ("en", None) and "?" not in str(r["language"])}
    noise = noise_check(pipeline, d, replace(base, transcribe=True), with_transcript=False) if limit is None else None
    if noise is not None:
        noise = {"bilabials": noise["bilabials"], "closure": noise["audio_only"]["closure"],
                 "abs_diff_to_clean": noise["audio_only"]["abs_diff_to_clean"], "target": NOISE_TOLERANCE,
                 "pass": noise["audio_only"]["pass"], "clips": [CLEAN, *NOISY]}
    bad = sorted(f for f, r in rows.items() if not r["ok"])
    return {
        "clips": len(rows), "failed": bad, "rows": rows,
        "non_english": {"clips": len(other), "english_transcript_used": sorted(f for f, r in other.items() if r["used"])},
        "noise": noise, "pass": not bad and (noise is None or noise["pass"]),
    }

