"""FaceMotion: the canonical motion every TalkRig layer exchanges.

- ``fps``: frames per second (float, 30 by default).
- ``weights``: float32 ``[T, 52]`` in ``[0, 1]``, columns in Apple's ARKit order (``rig_mapping.arkit``).
- ``head``: float32 ``[T, 6]``: pitch, yaw, roll in radians, then x, y, z in metres
  (axes in ``rig_mapping.arkit.HEAD_CHANNELS``' docstring).
- ``meta``: a JSON-serialisable dict (model, seed, style, audio hash, sample rate, version...).

Construction validates; it never silently clamps. ``FaceMotion.from_arrays(..., clamp=True)`` clamps
with a warning for callers (e.g. importers of noisy captures) that opt in.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arkit import ARKIT_NAMES, HEAD_CHANNELS, MIRROR_INDEX, NUM_CHANNELS

FORMAT_VERSION = 1
# A head rotation beyond this (radians, ~172 degrees) is certainly a unit mistake (degrees given).
MAX_HEAD_ANGLE = 3.0
# Weights may carry tiny numeric overshoot from filtering; beyond this tolerance they are refused.
WEIGHT_TOLERANCE = 1e-4


class MotionError(ValueError):
    """Invalid motion data; the message names the field and the fix."""


def _as_2d(name: str, arr: Any, width: int) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2 or a.shape[1] != width:
        raise MotionError(f"{name} must have shape [T, {width}], got {list(a.shape)}")
    if not np.issubdtype(a.dtype, np.floating) and not np.issubdtype(a.dtype, np.integer):
        raise MotionError(f"{name} must be numeric, got dtype {a.dtype}")
    return a


@dataclass(frozen=True, eq=False)
class FaceMotion:
    fps: float
    weights: np.ndarray
    head: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        fps = float(self.fps)
        if not math.isfinite(fps) or fps <= 0:
            raise MotionError(f"fps must be a positive number, got {self.fps!r}")
        w = _as_2d("weights", self.weights, NUM_CHANNELS)
        h = _as_2d("head", self.head, len(HEAD_CHANNELS))
        if w.shape[0] != h.shape[0]:
            raise MotionError(
                f"weights has {w.shape[0]} frames but head has {h.shape[0]}; both need one row per frame"
            )
        if w.dtype != np.float32:
            raise MotionError(f"weights must be float32, got {w.dtype} (convert with .astype(np.float32))")
        if h.dtype != np.float32:
            raise MotionError(f"head must be float32, got {h.dtype} (convert with .astype(np.float32))")
        for name, a in (("weights", w), ("head", h)):
            bad = ~np.isfinite(a)
            if bad.any():
                t, c = np.argwhere(bad)[0]
                col = ARKIT_NAMES[c] if name == "weights" else HEAD_CHANNELS[c]
                raise MotionError(f"{name} has a non-finite value at frame {t}, channel {col!r}")
        if w.size:
            lo, hi = float(w.min()), float(w.max())
            if lo < -WEIGHT_TOLERANCE or hi > 1 + WEIGHT_TOLERANCE:
                t, c = np.unravel_index(np.argmax(np.maximum(-w, w - 1)), w.shape)
                raise MotionError(
                    f"weights must lie in [0, 1]; frame {t}, channel {ARKIT_NAMES[c]!r} is {w[t, c]:.4f} "
                    "(use FaceMotion.from_arrays(..., clamp=True) to clamp with a warning)"
                )
        if h.size and float(np.abs(h[:, :3]).max()) > MAX_HEAD_ANGLE:
            raise MotionError(
                f"head rotations must be radians (|angle| <= {MAX_HEAD_ANGLE}); got up to "
                f"{float(np.abs(h[:, :3]).max()):.2f}: were degrees given? multiply by pi/180"
            )
        if not isinstance(self.meta, dict):
            raise MotionError(f"meta must be a dict, got {type(self.meta).__name__}")
        # Arrays are owned and read-only so a FaceMotion can be shared between threads safely.
        w = np.clip(np.array(w, dtype=np.float32), 0.0, 1.0)  # only removes the tolerated overshoot
        h = np.array(h, dtype=np.float32)
        w.flags.writeable = False
        h.flags.writeable = False
        object.__setattr__(self, "fps", fps)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "head", h)
        object.__setattr__(self, "meta", copy.deepcopy(self.meta))

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        weights: Any,
        head: Any | None = None,
        fps: float = 30.0,
        meta: dict[str, Any] | None = None,
        clamp: bool = False,
    ) -> FaceMotion:
        """Build from any numeric arrays; converts dtypes. ``head=None`` means a still head.

        With ``clamp=True`` out-of-range weights are clamped to [0, 1] with a warning naming how many.
        """
        w = np.asarray(weights, dtype=np.float32)
        if w.ndim != 2:
            raise MotionError(f"weights must have shape [T, 52], got {list(w.shape)}")
        h = np.zeros((w.shape[0], len(HEAD_CHANNELS)), np.float32) if head is None else np.asarray(head, np.float32)
        if clamp and w.size and np.isfinite(w).all():
            n = int(((w < 0) | (w > 1)).sum())
            if n:
                warnings.warn(f"clamped {n} weight values outside [0, 1]", stacklevel=2)
                w = np.clip(w, 0.0, 1.0)
        return cls(fps=fps, weights=w, head=h, meta=dict(meta or {}))

    @classmethod
    def neutral(cls, n_frames: int, fps: float = 30.0, meta: dict[str, Any] | None = None) -> FaceMotion:
        return cls.from_arrays(np.zeros((n_frames, NUM_CHANNELS), np.float32), None, fps, meta)

    # -- basic properties -----------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        return int(self.weights.shape[0])

    def __len__(self) -> int:
        return self.n_frames

    @property
    def duration(self) -> float:
        """Seconds covered: frames are samples at t = i / fps, so T frames span T / fps seconds."""
        return self.n_frames / self.fps

    @property
    def times(self) -> np.ndarray:
        return np.arange(self.n_frames, dtype=np.float64) / self.fps

    def channel(self, name: str) -> np.ndarray:
        """One ARKit weight curve by name, or a head channel (pitch, yaw, roll, x, y, z)."""
        if name in HEAD_CHANNELS:
            return self.head[:, HEAD_CHANNELS.index(name)]
        try:
            return self.weights[:, ARKIT_NAMES.index(name)]
        except ValueError:
            raise KeyError(f"unknown channel {name!r}; expected an ARKit name or one of {HEAD_CHANNELS}") from None

    def replace(self, **changes: Any) -> FaceMotion:
        d = {"fps": self.fps, "weights": self.weights, "head": self.head, "meta": self.meta}
        d.update(changes)
        return FaceMotion(**d)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaceMotion):
            return NotImplemented
        return (
            self.fps == other.fps
            and np.array_equal(self.weights, other.weights)
            and np.array_equal(self.head, other.head)
            and self.meta == other.meta
        )

    def allclose(self, other: FaceMotion, atol: float = 1e-5) -> bool:
        return (
            self.n_frames == other.n_frames
            and abs(self.fps - other.fps) < 1e-9
            and np.allclose(self.weights, other.weights, atol=atol)
            and np.allclose(self.head, other.head, atol=atol)
        )

    # -- editing ---------------------------------------------------------------------------------
    def __getitem__(self, key: slice) -> FaceMotion:
        if not isinstance(key, slice):
            raise TypeError("FaceMotion supports slicing by frame (motion[a:b]); use .weights[i] for one frame")
        # A step keeps every n-th frame, so the clip still plays in real time at fps / |step|.
        step = 1 if key.step is None else abs(int(key.step))
        if step == 0:
            raise ValueError("slice step cannot be zero")
        return self.replace(weights=self.weights[key], head=self.head[key], fps=self.fps / step)

    def slice_seconds(self, start: float, end: float | None = None) -> FaceMotion:
        a = max(0, int(round(start * self.fps)))
        b = self.n_frames if end is None else int(round(end * self.fps))
        return self[a:b]

    @staticmethod
    def concatenate(parts: list[FaceMotion]) -> FaceMotion:
        if not parts:
            raise MotionError("concatenate needs at least one FaceMotion")
        fps = parts[0].fps
        for i, p in enumerate(parts):
            if abs(p.fps - fps) > 1e-9:
                raise MotionError(f"part {i} has fps {p.fps}, part 0 has {fps}; resample first (.resample(fps))")
        return FaceMotion(
            fps=fps,
            weights=np.concatenate([p.weights for p in parts]),
            head=np.concatenate([p.head for p in parts]),
            meta=dict(parts[0].meta),
        )

    def mirrored(self) -> FaceMotion:
        """Swap left and right: L/R channels exchange, head yaw, roll and x change sign."""
        head = self.head.copy()
        head[:, [1, 2, 3]] *= -1
        return self.replace(weights=self.weights[:, list(MIRROR_INDEX)], head=head)

    def resample(self, fps: float) -> FaceMotion:
        """Resample to another frame rate by linear interpolation over time (t = i / fps).

        The new motion covers the same duration: round(duration * fps) frames. Upsampled frames past the
        last source sample continue its last segment (a ramp stays a ramp); weights are clipped to [0, 1].
        """
        fps = float(fps)
        if fps <= 0 or not math.isfinite(fps):
            raise MotionError(f"target fps must be positive, got {fps}")
        if abs(fps - self.fps) < 1e-9:
            return self
        if self.n_frames == 0:
            return self.replace(fps=fps)
        n = max(1, int(round(self.duration * fps)))
        t_new = np.arange(n, dtype=np.float64) / fps
        t_old = self.times
        if self.n_frames == 1:
            w = np.repeat(self.weights, n, 0)
            h = np.repeat(self.head, n, 0)
        else:
            # Upsampling puts up to one source frame of new samples after the last source sample;
            # extending the last segment's slope there (instead of holding) keeps ramps straight.
            w = np.clip(_interp_columns(t_new, t_old, self.weights), 0.0, 1.0)
            h = _interp_columns(t_new, t_old, self.head)
            h[:, :3] = np.clip(h[:, :3], -MAX_HEAD_ANGLE, MAX_HEAD_ANGLE)
        meta = dict(self.meta)
        return FaceMotion(fps=fps, weights=w, head=h, meta=meta)

    def smoothed(self, sigma_frames: float = 1.0, channels: list[str] | None = None) -> FaceMotion:
        """Gaussian smoothing over time (edges reflected). ``channels=None`` smooths every channel."""
        if sigma_frames <= 0:
            return self
        w = self.weights.copy()
        h = self.head.copy()
        k = _gaussian_kernel(sigma_frames)
        unknown = [c for c in channels or () if c not in ARKIT_NAMES and c not in HEAD_CHANNELS]
        if unknown:
            raise KeyError(f"unknown channels {unknown}; expected ARKit names or {HEAD_CHANNELS}")
        cols = range(NUM_CHANNELS) if channels is None else [ARKIT_NAMES.index(c) for c in channels if c in ARKIT_NAMES]
        for c in cols:
            w[:, c] = _convolve_reflect(w[:, c], k)
        hcols = range(6) if channels is None else [HEAD_CHANNELS.index(c) for c in channels if c in HEAD_CHANNELS]
        for c in hcols:
            h[:, c] = _convolve_reflect(h[:, c], k)
        return self.replace(weights=np.clip(w, 0, 1).astype(np.float32), head=h.astype(np.float32))

    def __repr__(self) -> str:
        return f"FaceMotion(frames={self.n_frames}, fps={self.fps:g}, duration={self.duration:.2f}s, meta_keys={sorted(self.meta)})"


def _interp_columns(t_new: np.ndarray, t_old: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Linear interpolation per column; past the last sample, linear extrapolation of the last segment."""
    out = np.empty((len(t_new), a.shape[1]), np.float32)
    for c in range(a.shape[1]):
        out[:, c] = np.interp(t_new, t_old, a[:, c])
    tail = t_new > t_old[-1]
    if tail.any() and len(t_old) >= 2:
        slope = (a[-1].astype(np.float64) - a[-2]) / (t_old[-1] - t_old[-2])
        out[tail] = (a[-1] + np.outer(t_new[tail] - t_old[-1], slope)).astype(np.float32)
    return out


def _gaussian_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _convolve_reflect(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    if len(x) < 2:
        return x.copy()
    r = len(k) // 2
    pad = np.pad(x.astype(np.float64), r, mode="reflect" if len(x) > r else "edge")
    return np.convolve(pad, k, mode="valid").astype(np.float32)
