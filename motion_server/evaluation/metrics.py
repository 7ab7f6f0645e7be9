"""Lip-sync and motion metrics: small pure functions over FaceMotion / arrays.

Three kinds:
- against ground-truth motion (synthetic corpus, user captures): lip vertex error, per-group curve MAE,
  lip-gap correlation, upper-face dynamics deviation, head angle error;
- against phone timings only (real recordings): bilabial closure rate, open-vowel / bilabial gap ratio,
  lip-gap vs audio-envelope lag;
- sanity of the motion itself: jitter, blinks, head statistics, diversity across seeds, window seams.

Geometric quantities are measured on the ICT face (``geometry``) in centimetres.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from motion_server.audio.loudness import audio_envelope
from motion_server.performer.visemes import BILABIALS, OPEN_VOWELS
from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_INDEX, GROUP_INDICES

from . import geometry

# Phone classes (ARPAbet). Open vowels: the jaw is lowest for these in English.

# A bilabial counts as closed when the midline lip gap is under 0.15 cm. ICT's neutral (touching) lips
# measure 0.064 cm; jawOpen 0.03 alone already parts them past 0.15 cm, and 1.5 mm of daylight between
# the lips is visible on a close-up, so the threshold is neutral contact plus ~1 mm of tolerance.
CLOSURE_THRESHOLD_CM = 0.15
# Floor for the bilabial mean gap in the open/bilabial ratio: 0.05 cm, below the mesh's resolution at the
# lips, so a perfectly shut mouth gives a large but finite ratio instead of dividing by ~0.
RATIO_EPS_CM = 0.05
BLINK_THRESHOLD = 0.5

# Channel groups for curve errors and jitter.
METRIC_GROUPS: dict[str, tuple[int, ...]] = {
    "mouth_jaw": GROUP_INDICES["jaw"] + GROUP_INDICES["mouth"],
    "eyes": GROUP_INDICES["eyes"],
    "brows": GROUP_INDICES["brows"],
}


class PhoneLike(Protocol):
    symbol: str
    start: float
    end: float


def _w(m: FaceMotion | np.ndarray) -> np.ndarray:
    return np.asarray(getattr(m, "weights", m), np.float64)


def _common(a: FaceMotion, b: FaceMotion) -> tuple[FaceMotion, FaceMotion]:
    """Both motions at a's frame rate, cut to the shorter length (engines may round frame counts)."""
    if abs(a.fps - b.fps) > 1e-9:
        b = b.resample(a.fps)
    n = min(a.n_frames, b.n_frames)
    if n == 0:
        raise ValueError("cannot compare empty motions")
    return a[:n], b[:n]


# -- against ground truth ------------------------------------------------------------------------------

def lip_vertex_error(pred: FaceMotion, gt: FaceMotion) -> float:
    """Per frame the largest L2 distance over mouth-region vertices, averaged over frames (cm)."""
    pred, gt = _common(pred, gt)
    d = np.linalg.norm(geometry.mouth_vertices(pred) - geometry.mouth_vertices(gt), axis=2)
    return float(d.max(axis=1).mean())


def group_mae(pred: FaceMotion, gt: FaceMotion) -> dict[str, float]:
    """Mean absolute weight error per channel group (mouth_jaw, eyes, brows), in weight units."""
    pred, gt = _common(pred, gt)
    diff = np.abs(_w(pred) - _w(gt))
    return {g: float(diff[:, list(idx)].mean()) for g, idx in METRIC_GROUPS.items()}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either curve is constant (no co-variation to speak of)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    n = min(len(a), len(b))
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-12 else 0.0


def lip_gap_correlation(pred: FaceMotion, gt: FaceMotion) -> float:
    pred, gt = _common(pred, gt)
    return pearson(geometry.lip_gap(pred), geometry.lip_gap(gt))


def upper_face_dynamics_deviation(pred: FaceMotion, gt: FaceMotion) -> float:
    """FDD-style: per upper-face vertex, std over time of its displacement; mean |std_pred - std_gt| (cm)."""
    pred, gt = _common(pred, gt)

    def per_vertex_std(m: FaceMotion) -> np.ndarray:
        v = geometry.upper_face_vertices(m)
        return np.linalg.norm(v - v.mean(axis=0, keepdims=True), axis=2).std(axis=0) if len(v) > 1 else np.zeros(
            v.shape[1]
        )

    return float(np.abs(per_vertex_std(pred) - per_vertex_std(gt)).mean())


def head_angle_error(pred: FaceMotion, gt: FaceMotion) -> float:
    """Mean over frames of the L2 norm of the (pitch, yaw, roll) difference, degrees."""
    pred, gt = _common(pred, gt)
    d = np.degrees(pred.head[:, :3].astype(np.float64) - gt.head[:, :3].astype(np.float64))
    return float(np.linalg.norm(d, axis=1).mean())


def ground_truth_metrics(pred: FaceMotion, gt: FaceMotion) -> dict[str, float]:
    out = {
        "lip_vertex_error_cm": lip_vertex_error(pred, gt),
        "lip_gap_corr": lip_gap_correlation(pred, gt),
        "fdd_cm": upper_face_dynamics_deviation(pred, gt),
        "head_error_deg": head_angle_error(pred, gt),
    }
    out.update({f"mae_{k}": v for k, v in group_mae(pred, gt).items()})
    return out


# -- against phone timings -----------------------------------------------------------------------------

def mid_frames(phones: Sequence[PhoneLike], symbols: frozenset[str], fps: float, n_frames: int) -> np.ndarray:
    """Frame index of the middle of every phone in ``symbols`` (the frames the phone metrics read)."""
    frames = [int(round(0.5 * (p.start + p.end) * fps)) for p in phones if p.symbol in symbols]
    return np.array([f for f in frames if 0 <= f < n_frames], dtype=np.int64)


def bilabial_closure_rate(gap: np.ndarray, phones: Sequence[PhoneLike], fps: float,
                          threshold: float = CLOSURE_THRESHOLD_CM) -> float | None:
    """Fraction of /P B M/ phones whose middle frame has a lip gap below ``threshold`` cm.

    None when the clip has no bilabial (the rate is undefined, not 0 or 1)."""
    f = mid_frames(phones, BILABIALS, fps, len(gap))
    if len(f) == 0:
        return None
    return float((np.asarray(gap)[f] < threshold).mean())


def open_bilabial_ratio(gap: np.ndarray, phones: Sequence[PhoneLike], fps: float,
                        eps: float = RATIO_EPS_CM) -> float | None:
    """Mean gap (clipped at 0) at the middle of open vowels / max(mean gap at bilabials, eps).

    High means the mouth opens for vowels and shuts for bilabials; ~1 means it does not distinguish."""
    g = np.maximum(np.asarray(gap, np.float64), 0.0)
    fo = mid_frames(phones, OPEN_VOWELS, fps, len(g))
    fb = mid_frames(phones, BILABIALS, fps, len(g))
    if len(fo) == 0 or len(fb) == 0:
        return None
    return float(g[fo].mean() / max(float(g[fb].mean()), eps))


def lag_frames(gap: np.ndarray, envelope: np.ndarray, max_lag: int = 10) -> int:
    """Signed lag (frames) at the cross-correlation peak between lip gap and audio envelope.

    Positive: the mouth follows the audio (late); negative: the mouth leads. Both curves are z-scored;
    each lag's correlation is normalised by its overlap length."""
    a = np.asarray(gap, np.float64)
    b = np.asarray(envelope, np.float64)
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    a = (a - a.mean()) / (a.std() + 1e-12)
    b = (b - b.mean()) / (b.std() + 1e-12)
    best, best_lag = -np.inf, 0
    for lag in range(-max_lag, max_lag + 1):
        # gap[t + lag] against env[t]
        if lag >= 0:
            x, y = a[lag:], b[: n - lag]
        else:
            x, y = a[: n + lag], b[-lag:]
        if len(x) < 2:
            continue
        c = float((x * y).mean())
        if c > best + 1e-12 or (abs(c - best) <= 1e-12 and abs(lag) < abs(best_lag)):
            best, best_lag = c, lag
    return best_lag


def phone_metrics(motion: FaceMotion, phones: Sequence[PhoneLike], audio: np.ndarray | None = None,
                  sr: int | None = None) -> dict[str, Any]:
    gap = geometry.lip_gap(motion)
    out: dict[str, Any] = {
        "bilabial_closure": bilabial_closure_rate(gap, phones, motion.fps),
        "open_bilabial_ratio": open_bilabial_ratio(gap, phones, motion.fps),
    }
    if audio is not None and sr:
        out["lag_frames"] = lag_frames(gap, audio_envelope(audio, sr, motion.fps, motion.n_frames))
    return out


# -- motion sanity -------------------------------------------------------------------------------------

def jitter(motion: FaceMotion) -> dict[str, float]:
    """Mean |second difference| per frame: per weight group (weight units) and head rotation (degrees)."""
    w = _w(motion)
    out: dict[str, float] = {}
    if len(w) < 3:
        return {**{g: 0.0 for g in METRIC_GROUPS}, "head_deg": 0.0}
    d2 = np.abs(np.diff(w, n=2, axis=0))
    for g, idx in METRIC_GROUPS.items():
        out[g] = float(d2[:, list(idx)].mean())
    out["head_deg"] = float(np.abs(np.diff(np.degrees(motion.head[:, :3].astype(np.float64)), n=2, axis=0)).mean())
    return out


def blink_signal(motion: FaceMotion) -> np.ndarray:
    w = motion.weights
    return 0.5 * (w[:, ARKIT_INDEX["eyeBlinkLeft"]] + w[:, ARKIT_INDEX["eyeBlinkRight"]]).astype(np.float64)


def blinks(motion: FaceMotion, threshold: float = BLINK_THRESHOLD) -> list[tuple[int, int]]:
    """(first, last+1) frame runs where both eyes average above ``threshold`` (eyes mostly shut)."""
    above = blink_signal(motion) > threshold
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    return list(zip(np.where(edges == 1)[0].tolist(), np.where(edges == -1)[0].tolist(), strict=True))


def blink_stats(motion: FaceMotion, threshold: float = BLINK_THRESHOLD) -> dict[str, float | None]:
    runs = blinks(motion, threshold)
    minutes = motion.duration / 60.0
    return {
        "blink_rate_per_min": len(runs) / minutes if minutes > 0 else 0.0,
        "blink_duration_s": float(np.mean([(b - a) / motion.fps for a, b in runs])) if runs else None,
    }


def head_stats(motion: FaceMotion) -> dict[str, float]:
    """Head rotation std (degrees, mean over pitch/yaw/roll) and mean angular speed (deg/s)."""
    ang = np.degrees(motion.head[:, :3].astype(np.float64))
    if len(ang) < 2:
        return {"head_std_deg": 0.0, "head_speed_deg_s": 0.0}
    return {
        "head_std_deg": float(ang.std(axis=0).mean()),
        "head_speed_deg_s": float(np.linalg.norm(np.diff(ang, axis=0), axis=1).mean() * motion.fps),
    }


def diversity(motions: Sequence[FaceMotion]) -> float:
    """Mean over pairs (e.g. different seeds, same audio) of the mean per-frame L2 weight distance."""
    if len(motions) < 2:
        raise ValueError("diversity needs at least two motions (e.g. two seeds)")
    n = min(m.n_frames for m in motions)
    ds = [float(np.linalg.norm(_w(a)[:n] - _w(b)[:n], axis=1).mean()) for a, b in itertools.combinations(motions, 2)]
    return float(np.mean(ds))


def head_seed_difference(motions: Sequence[FaceMotion]) -> float | None:
    """How different the head paths of several seeds (same audio) are, relative to how much each moves:
    mean over pairs of RMS(a - b) / mean per-axis std of a and b, over pitch/yaw/roll. Above 0.5 the seeds
    give visibly different head motion; near 0 the head is the same whatever the seed. None for a still
    head."""
    if len(motions) < 2:
        raise ValueError("head_seed_difference needs at least two motions (e.g. two seeds)")
    n = min(m.n_frames for m in motions)
    ratios = []
    for a, b in itertools.combinations(motions, 2):
        ha, hb = np.degrees(a.head[:n, :3].astype(np.float64)), np.degrees(b.head[:n, :3].astype(np.float64))
        spread = 0.5 * (ha.std(axis=0).mean() + hb.std(axis=0).mean())
        if spread < 1e-6:
            continue
        ratios.append(float(np.sqrt(((ha - hb) ** 2).mean()) / spread))
    return float(np.mean(ratios)) if ratios else None


def seam_size(motion: FaceMotion, boundaries: Sequence[int]) -> float | None:
    """How much the motion jumps at window joins, in units of the median frame-to-frame change.

    ``boundaries`` are frame indices b where frame b is the first of a new window. The jump at b is the
    step into b minus the mean of its neighbouring steps (a pop shows up; a join inside fast but smooth
    motion does not), ``|v[b-1] - (v[b-2] + v[b]) / 2|`` over the 52 weights with ``v[i] = x[i+1] - x[i]``,
    averaged over the joins and divided by the clip's median ``|v|``. Below 1 = a join changes the
    face less than a typical frame does. None when no boundary lies inside the motion. Blink channels
    are left out: a blink is a one-frame event by nature and says nothing about a join."""
    w = _w(motion)[:, _NO_BLINK]
    if len(w) < 4:
        return None
    v = np.diff(w, axis=0)
    at = [b for b in boundaries if 2 <= b < len(w) - 1]
    if not at:
        return None
    med = float(np.median(np.linalg.norm(v, axis=1)))
    return float(np.mean([_excess(v, b) for b in at]) / max(med, 1e-6))


def seam_control(motion: FaceMotion, boundaries: Sequence[int]) -> float | None:
    """:func:`seam_size`'s measure at every frame that is *not* a join: what "no seam" looks like for
    this motion (speech onsets and closures give every motion some frame-to-frame jumps)."""
    w = _w(motion)[:, _NO_BLINK]
    if len(w) < 4:
        return None
    v = np.diff(w, axis=0)
    joins = {j for b in boundaries for j in (b - 1, b, b + 1)}  # neighbours share the join's step
    frames = [b for b in range(2, len(w) - 1) if b not in joins]
    if not frames:
        return None
    med = float(np.median(np.linalg.norm(v, axis=1)))
    return float(np.mean([_excess(v, b) for b in frames]) / max(med, 1e-6))


_NO_BLINK = [i for i in range(52) if i not in (ARKIT_INDEX["eyeBlinkLeft"], ARKIT_INDEX["eyeBlinkRight"])]


def _excess(v: np.ndarray, b: int) -> float:
    return float(np.linalg.norm(v[b - 1] - 0.5 * (v[b - 2] + v[b])))


def motion_metrics(motion: FaceMotion) -> dict[str, Any]:
    out: dict[str, Any] = {f"jitter_{k}": v for k, v in jitter(motion).items()}
    out.update(blink_stats(motion))
    out.update(head_stats(motion))
    return out
