"""Robustness checks on the shared recordings.

- noise: DreamTalk's narrative clip and its noisy versions (cafeteria 0 dB, meeting 10 dB, office 0 dB
  SNR; the same speech sample-aligned). The bilabials are those of the narration's transcript aligned
  in the *clean* clip; every version is scored against those same times, generated from the audio alone
  and with the transcript. Target: each noisy version's bilabial closure within 0.10 of the clean one's.
- every clip: all shared recordings (languages, singing, whisper, laughter; m4a/mp3/opus/flac/wav) must
  load and give finite motion with weights in [0, 1] and head rotation within ±1 rad.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from motion_server.audio.io import load_audio
from motion_server.engine.base import GenerateOptions
from motion_server.options import SAMPLE_RATE

from .geometry import lip_gap
from .metrics import BILABIALS, bilabial_closure_rate

CLEAN = "dreamtalk__noisy_audio_narrative.wav"
NOISY = ("dreamtalk__noisy_audio_cafeter_snr_0.wav", "dreamtalk__noisy_audio_meeting_snr_10.wav",
         "dreamtalk__noisy_audio_office_snr_0.wav")
NOISE_TOLERANCE = 0.10
# The narration of the clean clip, as pocketsphinx's English recogniser transcribes it (the manifest has
# no transcript for these clips); every version is scored at the phones aligned to it in the clean clip.
NARRATIVE_TEXT = "Our method is capable of producing satisfactory results even with audio that contains noise"
SR = SAMPLE_RATE


def noise_check(engine: Any, speech_dir: Path, base: GenerateOptions,
                with_transcript: bool = True) -> dict[str, Any]:
    """Closure at the clean clip's bilabials for every version, generated from the audio alone and, for
    engines that read transcripts, with the transcript aligned to each (noisy) version
    (``with_transcript`` False skips that second mode)."""
    from dataclasses import replace

    from motion_server.align import AlignError, align_transcript, recognise_phones

    clean = load_audio(speech_dir / CLEAN, sr=SR)
    try:
        phones, source = align_transcript(clean, SR, NARRATIVE_TEXT), "transcript aligned in the clean clip"
    except AlignError:
        phones, source = recognise_phones(clean, SR), "recognised in the clean clip"
    modes = {"audio_only": base}
    if with_transcript:
        modes["with_transcript"] = replace(base, transcript=NARRATIVE_TEXT)
    out: dict[str, Any] = {"bilabials": sum(p.symbol in BILABIALS for p in phones), "phones_source": source,
                           "transcript": NARRATIVE_TEXT, "target": NOISE_TOLERANCE}
    for mode, opts in modes.items():
        rates: dict[str, float | None] = {}
        for name in (CLEAN, *NOISY):
            motion = engine.generate(load_audio(speech_dir / name, sr=SR), SR, opts)
            rates[name] = bilabial_closure_rate(lip_gap(motion), phones, motion.fps)
        c = rates[CLEAN]
        diffs = {n: (abs(rates[n] - c) if rates[n] is not None and c is not None else None) for n in NOISY}
        ok = c is not None and all(d is not None and d <= NOISE_TOLERANCE for d in diffs.values())
        out[mode] = {"closure": {k: (round(v, 4) if v is not None else None) for k, v in rates.items()},
                     "abs_diff_to_clean": {k: (round(v, 4) if v is not None else None) for k, v in diffs.items()},
                     "pass": bool(ok)}
    out["pass"] = out["audio_only"]["pass"]
    return out


def all_clips_check(engine: Any, speech_dir: Path, files: list[str], base: GenerateOptions) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for f in files:
        try:
            audio = load_audio(speech_dir / f, sr=SR)
            m = engine.generate(audio, SR, base)
        except Exception as exc:  # a clip the engine cannot take is the finding, not a crash
            rows[f] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            continue
        finite = bool(np.isfinite(m.weights).all() and np.isfinite(m.head).all())
        in_range = bool(finite and m.weights.min() >= 0.0 and m.weights.max() <= 1.0
                        and np.abs(m.head[:, :3]).max() <= 1.0)
        frames_ok = abs(m.n_frames - len(audio) / SR * m.fps) <= 1.0
        rows[f] = {"ok": finite and in_range and frames_ok, "finite": finite, "in_range": in_range,
                   "frames": m.n_frames, "duration_s": round(len(audio) / SR, 3),
                   "max_weight": round(float(m.weights.max()), 4) if finite else math.nan}
    bad = sorted(f for f, r in rows.items() if not r["ok"])
    return {"clips": len(rows), "failed": bad, "rows": rows, "pass": not bad}


def run_robustness_suite(engine: Any, shared_dir: Path, base: GenerateOptions) -> dict[str, Any]:
    import json

    from .suites import shared_speech_dir

    d = shared_speech_dir(Path(shared_dir))
    files = [c["file"] for c in json.loads((d / "MANIFEST.json").read_text(encoding="utf-8"))["clips"]]
    return {"noise": noise_check(engine, d, base), "all_clips": all_clips_check(engine, d, files, base)}
