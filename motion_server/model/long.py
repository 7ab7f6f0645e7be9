"""Sampling audio of any length: overlapping windows, run as batches, joined by in-painting.

The sampler runs on the whole timeline. At every step the timeline's noisy motion is cut into windows
of ``frames`` (overlap ``overlap``), the windows go through the denoiser in chunks (at most a batch's
worth at a time, so 10 minutes of audio fit in memory; the motion server packs chunks of several jobs
into one forward), and the windows' x0 predictions are
written back: in each overlap the later window is in-painted from the earlier one, with a linear
hand-over across the overlap (weights sum to one). Because the noisy input of the overlap is shared
by both windows and is re-derived from the joined x0 at every step, the overlap is the earlier
window's output noised to the current step — there is no seam to hide at the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

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


class TimelineSampling:
    """One sampler run over a whole timeline, stepped from outside one window chunk at a time.

    At each sampler step the timeline's noisy motion is cut into windows; callers ``take`` chunks of the
    pending windows, denoise them (alone, or packed with other jobs' windows into one forward: see
    ``batching.py``) and ``give`` the x0 predictions back. When every window of the step is back, they
    are joined, ``constraint`` is applied and the sampler moves on. ``sampler`` is a fresh sampler
    (``samplers.py``), ``x_T`` [B, T, C] the seeded start noise, ``cond`` [B, T, d] the conditioning.
    ``check`` runs before each chunk is handed out (cancel), ``on_progress(fraction)`` after each is back.
    ``context`` is the owner's (the engine keeps its style code and guidance scale there).
    """

    def __init__(self, sampler: Sampler, x_T: torch.Tensor, cond: torch.Tensor, frames: int, overlap: int,
                 constraint: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 check: Callable[[], None] | None = None, on_progress: Callable[[float], None] | None = None,
                 context: Any = None) -> None:
        self.batch, T, _ = x_T.shape
        self.timeline = WindowedTimeline(T, frames, overlap)
        self.cond_windows = self.timeline.cut(cond)
        self.n_windows = self.cond_windows.shape[0]
        self.sampler = sampler.start(x_T)
        self.constraint = constraint
        self.check = check or (lambda: None)
        self.on_progress = on_progress
        self.context = context
        self._begin_step()

    @property
    def window_length(self) -> int:
        return self.timeline.length

    @property
    def done(self) -> bool:
        return self.sampler.done

    @property
    def pending(self) -> int:
        """Windows of the current step not handed out yet."""
        return 0 if self.done else self.n_windows - self._next

    @property
    def t(self) -> int:
        return self.sampler.t

    def take(self, n: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        """(first window index k, noisy windows [n', L, C], their conditioning) for up to n windows."""
        if self.pending == 0:
            raise RuntimeError("no window is pending (the step is waiting for results, or sampling is done)")
        self.check()
        k = self._next
        self._next = min(k + n, self.n_windows)
        return k, self.x_windows[k: self._next], self.cond_windows[k: self._next]

    def give(self, k: int, x0_windows: torch.Tensor) -> None:
        """x0 predictions for the windows from index k on (as taken)."""
        n = x0_windows.shape[0]
        self._out[k: k + n] = x0_windows
        self._back += n
        if self._back == self.n_windows:
            x0 = self.timeline.join(self._out, self.batch)
            self.sampler.step(self.constraint(x0) if self.constraint is not None else x0)
            if not self.done:
                self._begin_step()
        if self.on_progress is not None:
            s = self.sampler
            self.on_progress(1.0 if s.done else (s.i + self._back / self.n_windows) / s.steps)

    def result(self) -> torch.Tensor:
        """x0 [B, T, C] over the whole timeline, once done."""
        if not self.done:
            raise RuntimeError("sampling is not done")
        out = self.sampler.x0
        return self.constraint(out) if self.constraint is not None else out

    def _begin_step(self) -> None:
        self.x_windows = self.timeline.cut(self.sampler.x)
        self._out = torch.empty_like(self.x_windows)
        self._next = 0
        self._back = 0


def seam_score(x: torch.Tensor, starts: list[int], length: int) -> float:
    """Largest frame-to-frame change at window borders divided by the median frame change: ~1 means
    the joins look like any other frame. x [T, C]."""
    d = (x[1:] - x[:-1]).abs().mean(-1)
    med = float(d.median()) + 1e-8
    borders = {s for s in starts[1:]} | {s + length for s in starts[:-1]}
    vals = [float(d[b - 1]) for b in borders if 0 < b < len(x)]
    return max(vals, default=0.0) / med
