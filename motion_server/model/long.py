"""Sampling audio of any length: overlapping windows, run as batches, joined by in-painting.

The sampler runs on the whole timeline. At every step the timeline's noisy motion is cut into windows
of ``frames`` (overlap ``overlap``), all windows go through the denoiser as one batch (in chunks of
``max_batch`` windows, so 10 minutes of audio fit in memory), and the windows' x0 predictions are
written back: in each overlap the later window is in-painted from the earlier one, with a linear
hand-over across the overlap (weights sum to one). Because the noisy input of the overlap is shared
by both windows and is re-derived from the joined x0 at every step, the overlap is the earlier
window's output noised to the current step — there is no seam to hide at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .samplers import Sampler

WindowFn = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]  # (x_t windows, audio windows, t) -> x0


def window_starts(n_frames: int, frames: int, overlap: int) -> list[int]:
    """Evenly spread window starts covering [0, n_frames) with at least ``overlap`` frames shared."""
    if n_frames <= frames:
        return [0]
    n = math.ceil((n_frames - overlap) / (frames - overlap))
    n = max(n, 2)
    step = (n_frames - frames) / (n - 1)
    return [int(round(i * step)) for i in range(n)]


def window_weights(starts: list[int], length: int, n_frames: int) -> torch.Tensor:
    """[n_windows, length] blend weights: linear ramps inside overlaps with neighbours; normalised so
    every timeline frame's weights sum to 1."""
    w = torch.ones(len(starts), length)
    for k in range(1, len(starts)):
        ov = starts[k - 1] + length - starts[k]
        if ov > 0:
            ramp = (torch.arange(ov, dtype=torch.float32) + 0.5) / ov
            w[k, :ov] = torch.minimum(w[k, :ov], ramp)
            w[k - 1, length - ov:] = torch.minimum(w[k - 1, length - ov:], 1 - ramp)
    total = torch.zeros(n_frames)
    for k, s in enumerate(starts):
        total[s: s + length] += w[k]
    for k, s in enumerate(starts):
        w[k] = w[k] / total[s: s + length]
    return w


class WindowedTimeline:
    """Cuts a [B, T, C] timeline into windows and joins window predictions back."""

    def __init__(self, n_frames: int, frames: int, overlap: int) -> None:
        self.n_frames = n_frames
        self.length = min(frames, n_frames)
        self.starts = window_starts(n_frames, self.length, overlap)
        self.weights = window_weights(self.starts, self.length, n_frames)

    def cut(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, C] -> [n_windows * B, L, C] (window-major)."""
        return torch.cat([x[:, s: s + self.length] for s in self.starts], dim=0)

    def join(self, xw: torch.Tensor, batch: int) -> torch.Tensor:
        """[n_windows * B, L, C] -> [B, T, C] weighted by the hand-over ramps."""
        out = xw.new_zeros(batch, self.n_frames, xw.shape[-1])
        for k, s in enumerate(self.starts):
            out[:, s: s + self.length] += xw[k * batch: (k + 1) * batch] * self.weights[k].to(xw)[None, :, None]
        return out


def sample_timeline(window_fn: WindowFn, audio_emb: torch.Tensor, sampler: Sampler, x_T: torch.Tensor,
                    frames: int, overlap: int, max_batch: int,
                    on_step: Callable[[int, int], None] | None = None,
                    constraint: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """audio_emb [B, T, d], x_T [B, T, C] -> x0 [B, T, C] over the whole timeline. ``constraint`` (x0 ->
    x0 on the joined timeline) is applied to every step's prediction and to the result."""
    B, T, _ = x_T.shape
    tl = WindowedTimeline(T, frames, overlap)
    audio_w = tl.cut(audio_emb)

    def model_fn(x: torch.Tensor, t: int) -> torch.Tensor:
        xw = tl.cut(x)
        outs = [window_fn(xw[i: i + max_batch], audio_w[i: i + max_batch], t)
                for i in range(0, xw.shape[0], max_batch)]
        x0 = tl.join(torch.cat(outs, dim=0), B)
        return constraint(x0) if constraint is not None else x0

    out = sampler.sample(model_fn, x_T, on_step)
    return constraint(out) if constraint is not None else out


def seam_score(x: torch.Tensor, starts: list[int], length: int) -> float:
    """Largest frame-to-frame change at window borders divided by the median frame change: ~1 means
    the joins look like any other frame. x [T, C]."""
    d = (x[1:] - x[:-1]).abs().mean(-1)
    med = float(d.median()) + 1e-8
    borders = {s for s in starts[1:]} | {s + length for s in starts[:-1]}
    vals = [float(d[b - 1]) for b in borders if 0 < b < len(x)]
    return max(vals, default=0.0) / med
