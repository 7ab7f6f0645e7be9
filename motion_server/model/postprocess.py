"""Controls applied after sampling: intensity, head-motion scale and blink rate.

Blink rate is post-hoc and exact: blink events are found in the generated eyeBlink channels; to reach
the requested rate, extra blinks (a fixed close-open template) are placed at seeded random times away
from existing ones, or surplus blinks are removed by bridging the channel across them.
"""

from __future__ import annotations

import numpy as np

from rig_mapping.arkit import ARKIT_INDEX

BLINK_IDX = (ARKIT_INDEX["eyeBlinkLeft"], ARKIT_INDEX["eyeBlinkRight"])
# close-open profile at 30 fps (~230 ms): fast close, slower open
BLINK_TEMPLATE_30 = np.array([0.35, 0.8, 1.0, 0.9, 0.65, 0.35, 0.12], np.float32)
BLINK_THRESHOLD = 0.5
MIN_GAP_S = 0.8


def blink_events(weights: np.ndarray, threshold: float = BLINK_THRESHOLD) -> list[tuple[int, int]]:
    """(start, end) frame spans where the mean eyeBlink value is above ``threshold``."""
    b = weights[:, list(BLINK_IDX)].mean(1) > threshold
    edges = np.flatnonzero(np.diff(np.concatenate([[0], b.astype(np.int8), [0]])))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def blinks_per_minute(weights: np.ndarray, fps: float) -> float:
    dur = len(weights) / fps
    return 60.0 * len(blink_events(weights)) / dur if dur > 0 else 0.0


def _template(fps: float) -> np.ndarray:
    n = max(3, int(round(len(BLINK_TEMPLATE_30) * fps / 30.0)))
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(BLINK_TEMPLATE_30)), BLINK_TEMPLATE_30)


def _remove_event(w: np.ndarray, span: tuple[int, int]) -> None:
    s, e = span
    a, b = max(0, s - 3), min(len(w) - 1, e + 3)
    for c in BLINK_IDX:
        w[a: b + 1, c] = np.minimum(np.linspace(w[a, c], w[b, c], b - a + 1), BLINK_THRESHOLD * 0.8)


def _add_event(w: np.ndarray, fps: float, rng: np.random.Generator) -> bool:
    """Place one blink where the eyes are open for ``MIN_GAP_S`` around it; False if nowhere fits."""
    tpl = _template(fps)
    T, n = len(w), len(tpl)
    if T < n + 2:
        return False
    open_ = w[:, list(BLINK_IDX)].mean(1) < BLINK_THRESHOLD * 0.8
    for gap in (MIN_GAP_S * fps, MIN_GAP_S * fps / 2, n):
        g = int(gap)
        # frames whose whole neighbourhood [s - g, s + n + g) is open
        ok = np.array([open_[max(0, s - g): s + n + g].all() for s in range(T - n)])
        cands = np.flatnonzero(ok)
        if len(cands):
            s = int(rng.choice(cands))
            for c in BLINK_IDX:
                w[s: s + n, c] = np.maximum(w[s: s + n, c], tpl)
            return True
    return False


def set_blink_rate(weights: np.ndarray, fps: float, rate_per_min: float, seed: int) -> np.ndarray:
    """Return weights whose blink count matches ``rate_per_min`` over the clip (rounded), as far as
    the clip has room for distinct blinks."""
    w = np.array(weights, np.float32, copy=True)
    target = int(round(max(0.0, rate_per_min) * len(w) / fps / 60.0))
    rng = np.random.default_rng(seed)
    for _ in range(4 * target + 8):
        events = blink_events(w)
        if len(events) == target:
            break
        if len(events) > target:
            _remove_event(w, events[int(rng.integers(len(events)))])
        elif not _add_event(w, fps, rng):
            break
    return w


def apply_controls(weights: np.ndarray, head: np.ndarray, fps: float, intensity: float = 1.0,
                   head_motion: float = 1.0, blink_rate: float | None = None,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """intensity scales every expression weight except blinks (0 = neutral face); head_motion scales
    the head pose (0 = still head); blink_rate sets blinks per minute (None keeps the model's)."""
    if intensity < 0 or head_motion < 0:
        raise ValueError(f"intensity and head_motion must be >= 0, got {intensity}, {head_motion}")
    w = np.array(weights, np.float32, copy=True)
    keep = w[:, list(BLINK_IDX)].copy()
    w = np.clip(w * float(intensity), 0.0, 1.0)
    w[:, list(BLINK_IDX)] = keep
    h = np.asarray(head, np.float32) * float(head_motion)
    if blink_rate is not None:
        w = set_blink_rate(w, fps, blink_rate, seed)
    return np.clip(w, 0.0, 1.0).astype(np.float32), h.astype(np.float32)
