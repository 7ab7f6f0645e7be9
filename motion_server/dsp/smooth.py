"""Gaussian smoothing along one axis, in numpy: the same kernel and edge rules as
``scipy.ndimage.gaussian_filter1d`` (``truncate`` 4), without importing scipy.ndimage."""

from __future__ import annotations

import numpy as np

MODES = ("reflect", "nearest", "mirror", "wrap")


def gaussian_kernel(sigma: float, truncate: float = 4.0) -> np.ndarray:
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / float(sigma)) ** 2)
    return k / k.sum()


def _edge_index(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Positions outside [0, n) mapped inside by scipy.ndimage's rule for ``mode`` (any distance out)."""
    if mode == "nearest":
        return np.clip(idx, 0, n - 1)
    if mode == "wrap":
        return idx % n
    if mode == "mirror":  # d c b | a b c d | c b a (edge sample not repeated)
        if n == 1:
            return np.zeros_like(idx)
        m = idx % (2 * n - 2)
        return np.where(m >= n, 2 * n - 2 - m, m)
    m = idx % (2 * n)  # reflect: d c b a | a b c d | d c b a
    return np.where(m >= n, 2 * n - 1 - m, m)


def gaussian_filter1d(x: np.ndarray, sigma: float, axis: int = -1, mode: str = "reflect",
                      truncate: float = 4.0) -> np.ndarray:
    """``x`` smoothed along ``axis`` by a Gaussian of standard deviation ``sigma`` samples; the result
    has ``x``'s shape and floating dtype (float64 for integer or bool input)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: use one of {', '.join(MODES)}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    a = np.asarray(x)
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    moved = np.moveaxis(a, axis, 0).astype(np.float64, copy=False)
    n = moved.shape[0]
    if n == 0:
        return a.astype(dtype, copy=True)
    k = gaussian_kernel(sigma, truncate)
    r = k.size // 2
    padded = moved[_edge_index(np.arange(-r, n + r), n, mode)]
    out = np.zeros(moved.shape, np.float64)
    for j, w in enumerate(k):
        out += w * padded[j: j + n]
    return np.moveaxis(out, 0, axis).astype(dtype, copy=False)
