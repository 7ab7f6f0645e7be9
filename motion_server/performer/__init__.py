"""Procedural performer: time-aligned phones (+ the audio, for prosody) -> a FaceMotion.

Lip sync by dominance-blended visemes with enforced bilabial closure (``coarticulation``), a speaker
style and emotion presets (``style``), and blinks, gaze, brows, head motion and breathing
(``nonverbal``, driven by ``prosody``). Used to label the synthetic training corpus and, on phones
recognised from real speech, as the non-neural baseline engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_NAMES, HEAD_CHANNELS, NUM_CHANNELS

from ..phones import Phone
from .channels import idx, idxs
from .coarticulation import blend_visemes, enforce_bilabial_closure
from .nonverbal import (
    blink_curves,
    blink_times,
    breath_curves,
    brow_curves,
    gaze_curves,
    gaze_to_channels,
    head_curves,
)
from .prosody import analyse_prosody
from .style import (
    EMOTIONS,
    INTENSITIES,
    STYLE_FIELDS,
    EmotionPreset,
    SpeakerStyle,
    emotion_preset,
    mix_presets,
    sample_speaker_style,
)
from .visemes import viseme_for

__all__ = [
    "EMOTIONS", "INTENSITIES", "STYLE_FIELDS", "EmotionPreset", "SpeakerStyle", "emotion_preset",
    "mix_presets", "perform", "sample_speaker_style",
]  # fmt: skip

# 2: emotion presets speak with stronger prosody and voice quality (corpus audio differs for a seed)
# 3: head, blinks and brows calibrated against real speakers (data/calibration.json): larger phrase-driven
#    head motion, real blink durations and rate, brows on phrase onsets too; emotions scale the head as
#    MEAD's emotional speech does
PERFORMER_VERSION = 3
_LEFT = np.array([n.endswith("Left") for n in ARKIT_NAMES])
_RIGHT = np.array([n.endswith("Right") for n in ARKIT_NAMES])
_GAZE = np.array([n.startswith("eyeLook") for n in ARKIT_NAMES])


def _clean_phones(phones: Sequence[Phone]) -> list[Phone]:
    out = []
    for i, p in enumerate(phones):
        if not (math.isfinite(p.start) and math.isfinite(p.end)) or p.end < p.start:
            raise ValueError(f"phone {i} ({p.symbol}) has invalid times {p.start}..{p.end}")
        out.append(p)
    return sorted(out, key=lambda p: (p.start, p.end))


def _loudness_scale(phones: Sequence[Phone], audio: np.ndarray | None, sr: int) -> list[float]:
    """Louder vowels open wider: ~+/-20% around the utterance's median vowel loudness."""
    scale = [1.0] * len(phones)
    if audio is None or not len(phones):
        return scale
    x = np.asarray(audio, np.float64)
    rms = []
    for p in phones:
        a, b = int(p.start * sr), int(p.end * sr)
        seg = x[a:b]
        rms.append(float(np.sqrt(np.mean(seg**2))) if seg.size else 0.0)
    vowel_rms = [r for p, r in zip(phones, rms, strict=True) if viseme_for(p.symbol).is_open and r > 0]
    if len(vowel_rms) < 3:
        return scale
    med = float(np.median(vowel_rms))
    for i, (p, r) in enumerate(zip(phones, rms, strict=True)):
        if viseme_for(p.symbol).is_open and r > 0:
            scale[i] = float(np.clip(1.0 + 0.2 * np.log2(r / med), 0.8, 1.2))
    return scale


def perform(
    phones: Sequence[Phone],
    audio: np.ndarray | None,
    sr: int,
    style: SpeakerStyle | None = None,
    emotion: str | EmotionPreset = "neutral",
    intensity: int = 1,
    rng: np.random.Generator | int | None = None,
    fps: float = 30.0,
    blink_rate: float | None = None,
    head_motion: float = 1.0,
    expressiveness: float = 1.0,
) -> FaceMotion:
    """Animate ``phones`` (ARPAbet, seconds) spoken in ``audio`` (mono, ``sr`` Hz; may be None).

    ``emotion``: a name from EMOTIONS (at ``intensity`` 1-3) or a ready EmotionPreset (e.g. a mix).
    ``rng``: a Generator or a seed (None = seed 0): the same seed gives the same performance.
    ``blink_rate``: blinks per minute overriding the style's. ``head_motion``: head movement scale.
    ``expressiveness``: scales emotion offsets, brow raises and (gently) articulation.
    Output covers max(audio length, last phone end) at ``fps``.
    """
    if fps <= 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be positive, got {fps}")
    if head_motion < 0 or expressiveness < 0:
        raise ValueError("head_motion and expressiveness must be >= 0")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(0 if rng is None else rng)
    phones = _clean_phones(phones)
    if audio is not None:
        audio = np.asarray(audio, np.float32).reshape(-1)
    duration = max(audio.size / sr if audio is not None else 0.0, phones[-1].end if phones else 0.0)
    n = max(1, int(round(duration * fps)))

    preset = emotion if isinstance(emotion, EmotionPreset) else emotion_preset(emotion, intensity)
    st = (style or SpeakerStyle()).scaled(preset.style_scale)
    if blink_rate is not None:
        if blink_rate < 0:
            raise ValueError(f"blink_rate must be >= 0 blinks per minute, got {blink_rate}")
        st = SpeakerStyle(**{**{f: getattr(st, f) for f in STYLE_FIELDS}, "blink_rate": float(blink_rate)})
    # independent streams so changing one component's draws never shifts another's
    r_blink, r_gaze, r_brow, r_head, r_breath = (np.random.default_rng(s) for s in gen.integers(0, 2**63, 5))

    prosody = analyse_prosody(phones, audio, sr, n, fps)

    # lip sync
    artic = st.articulation * (1.0 + 0.3 * (expressiveness - 1.0))
    amp = [max(artic, 0.2) * s for s in _loudness_scale(phones, audio, sr)]
    w = blend_visemes(phones, n, fps, amp, st.jaw_emphasis, st.lip_emphasis, st.anticipation).astype(np.float64)
    w[:, idx("jawOpen")] += st.jaw_rest - 0.03

    # resting expression: speaker baselines + emotion
    base = np.zeros(NUM_CHANNELS)
    base[idxs("mouthSmile")] += st.smile_baseline
    base[idxs("mouthFrown")] += st.frown_baseline
    base[idx("browInnerUp")] += st.brow_baseline
    for name, v in preset.channel_offsets.items():
        base[idx(name)] += v * expressiveness
    # a rounded mouth cannot smile or stretch at the same time: rounding vowels win over the expression
    rounding = np.clip(w[:, idx("mouthPucker")] + w[:, idx("mouthFunnel")], 0, 1)
    spread = np.zeros(NUM_CHANNELS, bool)
    spread[idxs("mouthSmile", "mouthStretch", "mouthDimple")] = True
    w += base[None, :] * np.where(spread[None, :], 1 - 0.6 * rounding[:, None], 1.0)

    # nonverbal layers
    blinks = blink_curves(n, fps, blink_times(duration, st.blink_rate, r_blink, prosody.phrase_starts), r_blink)
    w[:, idx("eyeBlinkLeft")] += blinks[:, 0]
    w[:, idx("eyeBlinkRight")] += blinks[:, 1]
    shut = blinks.max(axis=1)
    w[:, idxs("eyeWide")] *= (1 - shut)[:, None]  # a blink closes wide eyes too
    gi, gv = gaze_to_channels(gaze_curves(n, fps, st.saccade_rate, st.gaze_spread, r_gaze))
    w[:, gi] += gv
    # upper lids follow the eyes down
    w[:, idx("eyeBlinkLeft")] += 0.3 * w[:, idx("eyeLookDownLeft")]
    w[:, idx("eyeBlinkRight")] += 0.3 * w[:, idx("eyeLookDownRight")]
    brows = brow_curves(n, fps, prosody, st.brow_activity * expressiveness, r_brow)
    w[:, idx("browInnerUp")] += brows[:, 0]
    w[:, idx("browOuterUpLeft")] += brows[:, 1]
    w[:, idx("browOuterUpRight")] += brows[:, 2]
    for i, curve in breath_curves(n, fps, prosody, r_breath).items():
        w[:, i] += curve

    # one side of the face a little stronger (not gaze: eyes move together)
    w[:, _LEFT & ~_GAZE] *= 1 + st.asymmetry
    w[:, _RIGHT & ~_GAZE] *= 1 - st.asymmetry

    w = enforce_bilabial_closure(np.clip(w, 0, 1).astype(np.float32), phones, fps)
    head = head_curves(n, fps, prosody, st.head_energy, r_head, head_motion=head_motion)
    meta = {
        "engine": "procedural",
        "performer_version": PERFORMER_VERSION,
        "emotion": emotion if isinstance(emotion, str) else "mix",
        "intensity": int(intensity),
        "style": dict(zip(STYLE_FIELDS, (float(x) for x in st.to_vector()), strict=True)),
        "head_channels": list(HEAD_CHANNELS),
        "n_phones": len(phones),
    }
    return FaceMotion.from_arrays(np.clip(w, 0, 1), head, fps=fps, meta=meta)
