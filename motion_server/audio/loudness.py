"""Loudness per motion frame: what the energy engine drives the jaw with and what the evaluation
correlates lip motion against."""

from __future__ import annotations

import numpy as np


def audio_envelope(audio: np.ndarray, sr: int, fps: float, n_frames: int | None = None) -> np.ndarray:
    """RMS loudness per motion frame (window = one frame centred on t = i / fps)."""
    x = np.asarray(audio, np.float64).ravel()
    n = n_frames if n_frames is not None else max(1, int(round(len(x) / sr * fps)))
    hop = sr / fps
    centres = np.arange(n)
    a = np.clip(np.round((centres - 0.5) * hop).astype(np.int64), 0, len(x))
    b = np.clip(np.round((centres + 0.5) * hop).astype(np.int64), 0, len(x))
    cs = np.concatenate([[0.0], np.cumsum(x * x)])  # window sums in O(1) each
    count = b - a
    out = np.zeros(n)
    ok = count > 0
    out[ok] = np.sqrt(np.maximum(cs[b[ok]] - cs[a[ok]], 0.0) / count[ok])
    return out
