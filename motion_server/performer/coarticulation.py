"""Phones -> mouth curves: Cohen-Massaro dominance blending, then hard bilabial closure.

Each phone segment pulls every channel towards its viseme target with a dominance that is flat over the
phone's core and falls off as exp(-(tau / width)^c) outside it. The fall-off is wider before the phone
(anticipation: lips start moving ~100 ms before the sound) than after it (carry-over). Per frame and
channel the curve is the dominance-weighted mean of the targets. Blending can soften a /p b m/ closure
into a half-open mouth, which viewers notice at once, so closure is enforced afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rig_mapping.arkit import NUM_CHANNELS

from ..phones import Phone
from .channels import JAW_MASK, idx, idxs
from .visemes import BILABIALS, blend_params, rest_target, viseme_for, viseme_table

# Channels that part the lips; zeroed during a bilabial closure.
_LIP_OPENERS = idxs("mouthFunnel", "mouthUpperUp", "mouthLowerDown", "mouthRollUpper", "mouthShrugUpper",
                    "tongueOut", "mouthStretch")
_JAW = idx("jawOpen")
_CLOSE = idx("mouthClose")
_PRESS = idxs("mouthPress")
# The weakest dominance anywhere, towards rest: keeps frames far from any phone defined.
_FLOOR = 1e-3


@dataclass(frozen=True)
class _Segment:
    start: float
    end: float
    target: np.ndarray
    dom: np.ndarray  # [52] per-channel dominance


def _segments(phones: Sequence[Phone], amplitude: Sequence[float], jaw_gain: float,
              lip_gain: float) -> list[_Segment]:
    params = blend_params()
    table = viseme_table()
    gain = np.where(JAW_MASK, jaw_gain, lip_gain).astype(np.float32)
    out: list[_Segment] = []
    for p, amp in zip(phones, amplitude, strict=True):
        v = viseme_for(p.symbol)
        dom = np.where(JAW_MASK, v.dom_jaw, v.dom_lips).astype(np.float32)
        scale = float(amp)
        if v.is_open:
            # short unstressed vowels are reduced; stressed ones open wider
            dur = max(p.end - p.start, 1e-3)
            short = min(1.0, params.min_short_scale + (1 - params.min_short_scale) * dur / params.short_vowel_s)
            scale *= short * params.stress_scale.get(p.stress, 1.0) if p.stress is not None else short
        target = np.clip(v.target * gain * scale, 0.0, 1.0)
        if v.glide_to is None or p.end - p.start < 0.06:
            out.append(_Segment(p.start, p.end, target, dom))
        else:
            split = p.start + 0.6 * (p.end - p.start)
            glide = np.clip(table[v.glide_to].target * gain * scale, 0.0, 1.0)
            out.append(_Segment(p.start, split, target, dom))
            out.append(_Segment(split, p.end, glide, dom))
    return out


def blend_visemes(
    phones: Sequence[Phone],
    n_frames: int,
    fps: float,
    amplitude: Sequence[float] | None = None,
    jaw_gain: float = 1.0,
    lip_gain: float = 1.0,
    anticipation_scale: float = 1.0,
) -> np.ndarray:
    """Mouth/jaw curves [n_frames, 52] from phones (other channels stay 0 except rest values).

    ``amplitude``: per-phone target scale (articulation, loudness). ``anticipation_scale`` widens or
    narrows coarticulation (a speaker style trait).
    """
    params = blend_params()
    if amplitude is None:
        amplitude = [1.0] * len(phones)
    t = np.arange(n_frames, dtype=np.float64) / fps
    rest = rest_target()
    num = np.tile(rest * _FLOOR, (n_frames, 1)).astype(np.float64)
    den = np.full((n_frames, NUM_CHANNELS), _FLOOR, np.float64)
    w_ant = params.anticipation_s * anticipation_scale
    w_car = params.carryover_s * anticipation_scale
    reach = 4.0  # beyond 4 widths a dominance is negligible (exp(-4^1.4) < 1e-3)
    for s in _segments(phones, amplitude, jaw_gain, lip_gain):
        lo = int(np.floor((s.start - reach * w_ant) * fps))
        hi = int(np.ceil((s.end + reach * w_car) * fps)) + 1
        lo, hi = max(lo, 0), min(hi, n_frames)
        if hi <= lo:
            continue
        tt = t[lo:hi]
        margin = min(params.core_margin_s, 0.5 * (s.end - s.start))
        core_a, core_b = s.start + margin, s.end - margin
        before = np.clip(core_a - tt, 0.0, None) / w_ant
        after = np.clip(tt - core_b, 0.0, None) / w_car
        d = np.exp(-((before + after) ** params.exponent))
        dd = d[:, None] * s.dom[None, :]
        num[lo:hi] += dd * s.target[None, :]
        den[lo:hi] += dd
    return (num / den).astype(np.float32)


def bilabial_windows(phones: Sequence[Phone], n_frames: int, fps: float) -> np.ndarray:
    """[n_frames] in [0, 1]: 1 over the middle of each P/B/M (always including its centre frame), ramping
    to 0 over ~40 ms on either side."""
    t = np.arange(n_frames, dtype=np.float64) / fps
    w = np.zeros(n_frames, np.float64)
    ramp = max(0.04, 1.0 / fps)
    for p in phones:
        if p.symbol not in BILABIALS:
            continue
        c = 0.5 * (p.start + p.end)
        half = max(0.3 * (p.end - p.start), 0.5 / fps + 1e-6)
        lo = max(int(np.floor((c - half - ramp) * fps)), 0)
        hi = min(int(np.ceil((c + half + ramp) * fps)) + 1, n_frames)
        if hi <= lo:
            continue
        dist = np.abs(t[lo:hi] - c) - half
        w[lo:hi] = np.maximum(w[lo:hi], np.clip(1.0 - dist / ramp, 0.0, 1.0))
    return w


def enforce_bilabial_closure(weights: np.ndarray, phones: Sequence[Phone], fps: float) -> np.ndarray:
    """Lips fully closed over the middle of each P/B/M, whatever was blended or added on top.

    ARKit semantics: mouthClose closes the lips against an open jaw, so closure = no lip-opening channel
    and mouthClose a little above jawOpen. Returns a new array.
    """
    w = bilabial_windows(phones, weights.shape[0], fps)[:, None].astype(np.float32)
    out = weights.copy()
    if not w.any():
        return out
    out[:, _LIP_OPENERS] *= 1.0 - w
    jaw = np.minimum(out[:, _JAW], 0.12)
    out[:, _JAW] = (1 - w[:, 0]) * out[:, _JAW] + w[:, 0] * jaw
    close = np.maximum(out[:, _CLOSE], np.minimum(jaw + 0.06, 1.0))
    out[:, _CLOSE] = (1 - w[:, 0]) * out[:, _CLOSE] + w[:, 0] * close
    out[:, _PRESS] = np.maximum(out[:, _PRESS], 0.25 * w)
    return out
