"""Error-bounded keyframe reduction.

A sampled curve (one value per frame) becomes a few keys such that **linear interpolation between the
kept keys stays within ``tol`` of the original value at every frame**. The method is a
Ramer-Douglas-Peucker split on the vertical (value) error, not the perpendicular distance, because the
guarantee a user needs is "the animation at frame f is off by at most tol", and Blender/engines
evaluate keys at frames. Kept values are the original samples, so the first and last frames are exact.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .arkit import ARKIT_NAMES, HEAD_CHANNELS
from .motion import FaceMotion


def reduce_curve(values: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Reduce one curve sampled at frames 0..n-1.

    Returns ``(frames, keys)``: int64 frame indices (sorted, always including 0 and n-1) and the
    original values (float64) at those frames. ``max |interp(frames, keys) - values| <= tol`` at every frame.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 1:
        raise ValueError(f"reduce_curve needs a 1-D curve, got shape {list(y.shape)}")
    if not np.isfinite(y).all():
        raise ValueError("reduce_curve: the curve has NaN or infinite values")
    if tol < 0 or not np.isfinite(tol):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tol}")
    n = len(y)
    if n <= 2:
        idx = np.arange(n, dtype=np.int64)
        return idx, y[idx].copy()
    keep = np.zeros(n, dtype=bool)
    keep[0] = keep[-1] = True
    frames = np.arange(n)
    # Breadth-first splitting, vectorised over all segments at once: every pass measures each
    # segment's worst frame against the straight line between its end keys and keeps that frame
    # where the miss exceeds tol. Same keys as the recursive split, one numpy pass per tree level.
    while True:
        prev = np.maximum.accumulate(np.where(keep, frames, 0))
        nxt = np.minimum.accumulate(np.where(keep, frames, n - 1)[::-1])[::-1]
        span = np.maximum(nxt - prev, 1)
        err = np.abs(y - (y[prev] + (y[nxt] - y[prev]) * (frames - prev) / span))
        err[keep] = 0.0
        starts = np.flatnonzero(keep)
        seg_max = np.maximum.reduceat(err, starts)
        over = np.flatnonzero(seg_max > tol)
        if over.size == 0:
            break
        seg_of = np.cumsum(keep) - 1  # segment number of every frame (keys open their segment)
        hit = (err == seg_max[seg_of]) & (seg_max[seg_of] > tol)
        cand = np.flatnonzero(hit)
        _, first = np.unique(seg_of[cand], return_index=True)  # the earliest worst frame per segment
        keep[cand[first]] = True
    idx = np.flatnonzero(keep).astype(np.int64)
    return idx, y[idx].copy()


def expand_keys(frames: np.ndarray, keys: np.ndarray, n_frames: int) -> np.ndarray:
    """Evaluate linearly interpolated keys at frames 0..n_frames-1 (what Blender's LINEAR keys show)."""
    return np.interp(np.arange(n_frames, dtype=np.float64), np.asarray(frames, np.float64),
                     np.asarray(keys, np.float64))


def reduce_curves(curves: Mapping[str, np.ndarray], tol: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reduce named 1-D curves (e.g. ``apply_profile(...).shapes``, or one bone axis each)."""
    return {name: reduce_curve(c, tol) for name, c in curves.items()}


@dataclass(frozen=True)
class MotionKeys:
    """Keys per channel for a whole FaceMotion: ``keys[channel] = (frames, values)``."""

    n_frames: int
    fps: float
    tol: float
    head_tol: float
    keys: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {name: len(f) for name, (f, _) in self.keys.items()}

    @property
    def total_keys(self) -> int:
        return sum(self.counts.values())

    @property
    def dense_keys(self) -> int:
        """Keys a frame-by-frame bake would write for the same channels."""
        return self.n_frames * len(self.keys)

    def max_error(self, motion: FaceMotion) -> dict[str, float]:
        """Largest absolute difference per channel between the keys and ``motion`` (a self-check)."""
        out = {}
        for name, (f, v) in self.keys.items():
            out[name] = float(np.max(np.abs(expand_keys(f, v, self.n_frames) - motion.channel(name)), initial=0.0))
        return out

    def summary(self) -> dict[str, object]:
        return {
            "n_frames": self.n_frames,
            "fps": self.fps,
            "tol": self.tol,
            "head_tol": self.head_tol,
            "total_keys": self.total_keys,
            "dense_keys": self.dense_keys,
            "per_channel": self.counts,
        }


def reduce_motion(
    motion: FaceMotion,
    tol: float = 1e-3,
    head_tol: float | None = None,
    channels: list[str] | None = None,
) -> MotionKeys:
    """Reduce every weight channel (tolerance ``tol``, weight units) and head channel (``head_tol``,
    radians / metres; defaults to ``tol``). ``channels`` limits which channels are reduced."""
    head_tol = tol if head_tol is None else head_tol
    names = list(ARKIT_NAMES) + list(HEAD_CHANNELS) if channels is None else list(channels)
    keys = {}
    for name in names:
        curve = motion.channel(name)  # KeyError with the valid names for a typo
        keys[name] = reduce_curve(curve, head_tol if name in HEAD_CHANNELS else tol)
    return MotionKeys(n_frames=motion.n_frames, fps=motion.fps, tol=tol, head_tol=head_tol, keys=keys)
