"""Checks for automatic transcription on every shared recording (``talkrig eval --suite recognition``).

Each clip is animated twice with the same seed through the pipeline a user gets: with recognition (the
default: no transcript given) and with ``--no-transcribe``. Then:
- languages other than English (manifest language not ``en``): no English transcript may be used, and
  the motion may be no worse than without recognition (lip-gap vs loudness correlation);
- English clips: no worse than without recognition (bilabial closure at the manifest transcript's
  aligned phones where it has one, else lip-gap vs loudness correlation); singing, whisper and laughter
  included;
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
from motion_server.engine.base import GenerateOptions

from .geometry import lip_gap
from .metrics import audio_envelope, bilabial_closure_rate, pearson
from .robustness import CLEAN, NOISE_TOLERANCE, NOISY, noise_check

SR = 16000
NO_WORSE = 0.05  # closure or correlation may drop by at most this (seed-level noise) to count as no worse


def _finite(m: Any) -> bool:
    return bool(np.isfinite(m.weights).all() and np.isfinite(m.head).all() and m.weights.min() >= 0
                and m.weights.max() <= 1 and np.abs(m.head[:, :3]).max() <= 1.0)


def _corr(m: Any, audio: np.ndarray) -> float:
    return float(pearson(lip_gap(m), audio_envelope(audio, SR, m.fps, m.n_frames)))


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
    if "closure_on" in row and row["closure_on"] is not None and row["closure_off"] is not None:
        no_worse = row["closure_on"] >= row["closure_off"] - NO_WORSE
    else:
        no_worse = not (math.isfinite(row["corr_on"]) and math.isfinite(row["corr_off"])) or \
            row["corr_on"] >= row["corr_off"] - NO_WORSE
    row["no_worse"] = bool(no_worse)
    row["english_forced"] = (not english) and row["used"]
    row["ok"] = row["finite"] and row["no_worse"] and not row["english_forced"]
    return row


def run_recognition_suite(pipeline: Any, shared_dir: Path, base: GenerateOptions,
                          limit: int | None = None) -> dict[str, Any]:
    from .suites import shared_speech_dir

    d = shared_speech_dir(Path(shared_dir))
    entries = json.loads((d / "MANIFEST.json").read_text(encoding="utf-8"))["clips"][:limit]
    rows = {e["file"]: clip_check(pipeline, d / e["file"], e, base) for e in entries}
    other = {f: r for f, r in rows.items() if r["language"] != "en"}
    noise = noise_check(_Recognising(pipeline), d, replace(base, transcribe=True)) if limit is None else None
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


class _Recognising:
    """The pipeline seen as an engine by the noise check, which calls it without a transcript."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline

    def generate(self, audio: np.ndarray, sr: int, options: GenerateOptions) -> Any:
        # the noise check's "with_transcript" mode gives the narration; recognition is what is measured,
        # so only its audio-only mode (no transcript: recognised) is reported
        return self.pipeline.generate(audio, sr, options)
