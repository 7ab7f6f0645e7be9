"""Style checks for an engine with a style space (the diffusion engine): guidance sweep, reference
recovery and the audio-only style prior. Each check returns its numbers, its target and pass/fail.

- guidance sweep (per emotion preset, on real English clips): the preset's *characteristic channels*
  are the ``k`` ARKit weights whose clip mean moves most between the neutral output and the preset's
  output at scale 1 (blinks excluded: the engine places them). Activity at a scale = mean over those
  channels of the signed shift from the neutral output. Targets: scale 0 is the neutral output;
  activity grows monotonically over 0, 0.5, 1, 1.5, 2; lip sync at scale 1 within 10 % of scale 0
  (bilabial closure; lag within a frame). The open/bilabial ratio change is reported separately.
- reference recovery (held-out synthetic speakers: test-split utterances, each performed with its own
  sampled speaker style that training never saw): generate from each of K reference clips on the same
  audio (held-out voices); the style code of each output must be nearer its own reference's code than
  any other reference's (target: >= 80 % of cases; chance 1/K).
- style prior (held-out synthetic voices): the predicted style code's nearest emotion preset must be the
  clip's emotion (target: >= 60 %; chance 1/8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from itertools import islice
from typing import Any

import numpy as np

from motion_server.engine.base import GenerateOptions
from motion_server.options import SAMPLE_RATE
from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_INDEX

from .metrics import phone_metrics
from .suites import EvalClip

SCALES = (0.0, 0.5, 1.0, 1.5, 2.0)
CHARACTERISTIC_K = 6
LIP_TOLERANCE = 0.10
# Lip *sync*: closure at bilabials and the lip-gap/loudness lag (frames; compared in absolute frames,
# tolerance 1, since 10 % of a lag near 0 is meaningless). The open/bilabial gap ratio is reported too but
# measures articulation size, which emotional styles change on purpose (an angry speaker opens wider).
SYNC_METRICS = ("bilabial_closure", "lag_frames")
REFERENCE_TARGET = 0.80
EMOTION_TARGET = 0.60
_BLINKS = [ARKIT_INDEX["eyeBlinkLeft"], ARKIT_INDEX["eyeBlinkRight"]]


def _mean_weights(motions: Sequence[FaceMotion]) -> np.ndarray:
    return np.stack([m.weights.mean(0) for m in motions])  # [clips, 52]


def _lip(motions: Sequence[FaceMotion], clips: Sequence[EvalClip]) -> dict[str, float]:
    rows = [phone_metrics(m, c.phones, c.audio, c.sr) for m, c in zip(motions, clips, strict=True) if c.phones]
    out = {}
    for k in SYNC_METRICS + ("open_bilabial_ratio",):
        vals = [r[k] for r in rows if r.get(k) is not None]
        out[k] = float(np.mean(vals)) if vals else float("nan")
    return out


def guidance_sweep(engine: Any, clips: Sequence[EvalClip], presets: Sequence[str], base: GenerateOptions,
                   scales: Sequence[float] = SCALES, k: int = CHARACTERISTIC_K) -> dict[str, Any]:
    """Per preset: activity per scale, monotonicity, distance of scale 0 to neutral, lip metrics."""
    def run(style: str, g: float) -> list[FaceMotion]:
        return [engine.generate(c.audio, c.sr, replace(base, style=style, guidance=g)) for c in clips]

    neutral = run("neutral", 1.0)
    n_mean = _mean_weights(neutral)
    out: dict[str, Any] = {}
    for p in presets:
        if p == "neutral":
            continue
        by_scale = {g: run(p, g) for g in scales}
        shift1 = (_mean_weights(by_scale[1.0]) - n_mean).mean(0)
        shift1[_BLINKS] = 0.0
        chans = np.argsort(-np.abs(shift1))[:k]
        sign = np.sign(shift1[chans])
        activity = [float(((_mean_weights(by_scale[g]) - n_mean)[:, chans] * sign).mean()) for g in scales]
        lip0, lip1 = _lip(by_scale[0.0], clips), _lip(by_scale[1.0], clips)
        rel = {key: abs(lip1[key] - lip0[key]) / max(abs(lip0[key]), 1e-6) for key in lip0 if key != "lag_frames"}
        lag_moved = abs(lip1["lag_frames"] - lip0["lag_frames"])
        zero_gap = max(float(np.abs(a.weights - b.weights).max()) for a, b in zip(by_scale[0.0], neutral, strict=True))
        out[p] = {
            "channels": [list(ARKIT_INDEX)[c] for c in chans],
            "activity": dict(zip([str(g) for g in scales], [round(a, 5) for a in activity], strict=True)),
            "monotonic": bool(all(b > a for a, b in zip(activity, activity[1:], strict=False))),
            "scale0_max_abs_diff_to_neutral": round(zero_gap, 6),
            "lip_scale0": {k_: round(v, 4) for k_, v in lip0.items()},
            "lip_scale1": {k_: round(v, 4) for k_, v in lip1.items()},
            "lip_relative_change": {k_: round(v, 4) for k_, v in rel.items()},
            "lag_change_frames": round(lag_moved, 3),
            "sync_within_10pct": bool(rel["bilabial_closure"] <= LIP_TOLERANCE and lag_moved <= 1.0),
            "ratio_within_10pct": bool(rel["open_bilabial_ratio"] <= LIP_TOLERANCE),
        }
    return out


def reference_recovery(engine: Any, references: Sequence[FaceMotion], audios: Sequence[tuple[np.ndarray, int]],
                       base: GenerateOptions) -> dict[str, Any]:
    """Share of (reference, audio) pairs whose output's style code is nearest its own reference."""
    import torch

    ref_codes = torch.stack([engine.encode_reference(r) for r in references])
    hits, total = 0, 0
    for audio, sr in audios:
        for i, r in enumerate(references):
            out = engine.generate(audio, sr, replace(base, style_reference=r))
            d = torch.cdist(engine.encode_reference(out)[None], ref_codes)[0]
            hits += int(int(d.argmin()) == i)
            total += 1
    acc = hits / total if total else float("nan")
    return {"accuracy": round(acc, 4), "cases": total, "references": len(references),
            "chance": round(1 / max(len(references), 1), 4), "target": REFERENCE_TARGET,
            "pass": bool(acc >= REFERENCE_TARGET)}


def wilson_interval(k: int, n: int, z: float = 1.96) -> list[float] | None:
    """95 % interval of a success rate k/n (Wilson score): how far a few hundred clips can be trusted."""
    if n <= 0:
        return None
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(float(mid - half), 4), round(float(mid + half), 4)]


def style_prior_emotion(engine: Any, clips: Sequence[tuple], seed: int = 0) -> dict[str, Any]:
    """Share of clips whose predicted style code's nearest preset is the clip's emotion. Each clip is
    ``(audio, sr, emotion)`` or ``(audio, sr, emotion, voice)``; with voices the result also gives
    ``per_voice`` [right, clips] (clips of one voice are not independent draws)."""
    import torch

    names = engine.model.preset_names()
    presets = torch.stack([engine.model.preset(n) for n in names])
    right, counts = 0, {}
    confusion: dict[str, dict[str, int]] = {}
    per_voice: dict[str, list[int]] = {}
    for audio, sr, emotion, *voice in clips:
        code = engine.predicted_style(audio, sr, seed)
        guess = names[int(torch.cdist(code[None], presets)[0].argmin())]
        right += int(guess == emotion)
        if voice:
            tally = per_voice.setdefault(str(voice[0]), [0, 0])
            tally[0] += int(guess == emotion)
            tally[1] += 1
        counts[emotion] = counts.get(emotion, 0) + 1
        confusion.setdefault(emotion, {}).setdefault(guess, 0)
        confusion[emotion][guess] += 1
    acc = right / len(clips) if clips else float("nan")
    return {"accuracy": round(acc, 4), "ci95": wilson_interval(right, len(clips)), "clips": len(clips),
            "per_emotion": counts, "confusion": confusion, **({"per_voice": per_voice} if per_voice else {}),
            "chance": round(1 / max(len(names), 1), 4), "target": EMOTION_TARGET, "pass": bool(acc >= EMOTION_TARGET)}


def summarize_sweep(sweep: dict[str, Any]) -> dict[str, Any]:
    presets = list(sweep.values())
    return {
        "presets": len(presets),
        "monotonic": sum(p["monotonic"] for p in presets),
        "scale0_is_neutral": bool(all(p["scale0_max_abs_diff_to_neutral"] < 1e-4 for p in presets)),
        "sync_within_10pct": sum(p["sync_within_10pct"] for p in presets),
        "ratio_within_10pct": sum(p["ratio_within_10pct"] for p in presets),
        "pass": bool(presets and all(p["monotonic"] and p["sync_within_10pct"] for p in presets)
                     and all(p["scale0_max_abs_diff_to_neutral"] < 1e-4 for p in presets)),
    }


def run_style_suite(engine: Any, shared_dir: Any, data: Any, base: GenerateOptions, sweep_clips: int = 3,
                    n_references: int = 12, n_prior: int = 300) -> dict[str, Any]:
    """All style checks; the synthetic parts need ``data`` (a corpus from ``talkrig synth``)."""
    from pathlib import Path

    from . import suites

    if not hasattr(engine, "encode_reference") or not hasattr(engine, "predicted_style"):
        raise suites.SuiteError("the style suite needs an engine with a learned style space (--engine diffusion)")
    out: dict[str, Any] = {"notes": []}
    real = list(islice((c for c in suites.real_clips(Path(shared_dir)) if c.phones), sweep_clips))
    if not real:
        raise suites.SuiteError("no English clip with phones in the shared speech folder; the guidance sweep "
                                "needs some (check --shared-dir)")
    presets = engine.model.preset_names()
    acted = acted_emotion_clips(shared_dir)
    if acted:  # real acted speech: how the audio-only style prior fares outside the synthetic corpus
        out["style_prior_acted"] = style_prior_emotion(engine, acted, base.seed)
    if "neutral" not in presets:
        out["notes"].append("the model has no neutral preset; guidance sweep skipped")
    else:
        sweep = guidance_sweep(engine, real, presets, base)
        out["guidance_sweep"] = {"clips": [c.name for c in real], "presets": sweep, "summary": summarize_sweep(sweep)}
    if data is None:
        out["notes"].append("no --data corpus: reference recovery and style prior need held-out synthetic speakers")
        return out
    from motion_server.synth.corpus import CorpusReader

    reader = CorpusReader(Path(data), "test")
    held_out = set(reader.manifest.get("splits", {}).get("test_voices") or [])
    refs: list[FaceMotion] = []
    audios: list[tuple[np.ndarray, int]] = []
    prior: list[tuple[np.ndarray, int, str, str]] = []
    for u in reader:
        if u.voice in held_out and len(prior) < n_prior:
            prior.append((np.asarray(u.audio, np.float32), int(u.sr), str(u.emotion), str(u.voice)))
        dur = len(u.audio) / u.sr
        if dur >= 2.5 and len(refs) < n_references:
            refs.append(u.motion)
        elif dur >= 3.0 and u.voice in held_out and len(audios) < 2:
            audios.append((np.asarray(u.audio, np.float32), int(u.sr)))
    out["reference_recovery"] = reference_recovery(engine, refs, audios, base)
    out["reference_recovery"]["held_out_voices"] = sorted(held_out)
    out["style_prior"] = style_prior_emotion(engine, prior, base.seed)
    # the val voices: held out of training as well, a second opinion on voices the model never heard
    val = CorpusReader(Path(data), "val")
    val_voices = set(val.manifest.get("splits", {}).get("val_voices") or [])
    val_clips = [(np.asarray(u.audio, np.float32), int(u.sr), str(u.emotion), str(u.voice))
                 for u in islice((u for u in val if u.voice in val_voices), n_prior)]
    if val_clips:
        out["style_prior_val_voices"] = style_prior_emotion(engine, val_clips, base.seed)
    return out


# Acted-emotion recordings in the shared speech folder name their emotion in the manifest's "kind"
# ("speech (acted emotion: anger)"); these map onto the presets. Other labels (out of breath) are skipped.
ACTED_EMOTIONS = {"anger": "angry", "joy": "happy", "sadness": "sad", "neutral": "neutral"}


def acted_emotion_clips(shared_dir: Any) -> list[tuple[np.ndarray, int, str]]:
    """(audio, sr, preset emotion) for the shared recordings labelled with an acted emotion."""
    import json
    import re
    from pathlib import Path

    from motion_server.audio.io import load_audio

    from .suites import shared_speech_dir

    d = shared_speech_dir(Path(shared_dir))
    out = []
    for c in json.loads((d / "MANIFEST.json").read_text(encoding="utf-8"))["clips"]:
        m = re.search(r"acted emotion: (\w+)\)", c.get("kind", ""))
        if m and m.group(1) in ACTED_EMOTIONS:
            out.append((load_audio(d / c["file"], sr=SAMPLE_RATE), SAMPLE_RATE, ACTED_EMOTIONS[m.group(1)]))
    return out
