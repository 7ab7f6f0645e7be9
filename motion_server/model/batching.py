"""Packing the windows of several sampling runs into shared denoiser forwards.

Every generation is a ``TimelineSampling`` (``long.py``): at each sampler step its timeline is cut into
windows that wait to be denoised. A ``WindowBatcher`` holds any number of such runs (one job alone in
``DiffusionEngine.generate``, the concurrent jobs of the motion server) and, per ``step()``, fills one
forward of at most ``max_batch`` windows: round-robin over the runs, one window each in turn, so a short
job gets its share of every forward while a long one is sampled and finishes long before it. Each run
advances its own sampler step as soon as all of its windows are back; runs at different steps or with
different guidance share a forward (the timestep and style travel per row). Only windows of the same
length are stacked (clips shorter than a window have their own length), so no padding ever changes a
result. A run's failure (cancel, a bad constraint, a forward that fails for its rows) ends that run only.

Numerics: a job packed with others gets the same numbers as alone because the denoiser is row-
independent outside training (see ``denoiser.py``) and each job's noise comes from its own generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .long import TimelineSampling, WindowFn
from .samplers import Sampler


@dataclass(eq=False)
class WindowWork:
    """Windows ``k`` .. ``k + len(x)`` of one run at its current step."""

    run: TimelineSampling
    k: int
    x: torch.Tensor  # noisy windows [n, L, C]
    cond: torch.Tensor  # their conditioning [n, L, d]
    t: int  # the run's current training step


Forward = Callable[[list[WindowWork]], list[torch.Tensor]]  # -> x0 windows per work item, in order
Ended = tuple[TimelineSampling, BaseException | None]


class WindowBatcher:
    def __init__(self, forward: Forward, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 window, got {max_batch}")
        self.forward = forward
        self.max_batch = int(max_batch)
        self._runs: list[TimelineSampling] = []  # in turn order: the head fills the next forward first
        # what the batches looked like (the server reports it; tests check the bound)
        self.forwards = 0
        self.largest = 0  # most windows in one forward
        self.most_runs = 0  # most runs sharing one forward

    def add(self, run: TimelineSampling) -> None:
        if run not in self._runs:
            self._runs.append(run)

    def remove(self, run: TimelineSampling) -> None:
        if run in self._runs:
            self._runs.remove(run)

    def __len__(self) -> int:
        return len(self._runs)

    @torch.inference_mode()
    def step(self) -> list[Ended]:
        """One shared forward. Returns the runs that ended (``None``: done; else the exception that ended
        it), already removed."""
        ended: list[Ended] = []
        work = self._fill(ended)
        if work:
            self.forwards += 1
            self.largest = max(self.largest, sum(len(w.x) for w in work))
            self.most_runs = max(self.most_runs, len({id(w.run) for w in work}))
            for w, out in self._forward(work, ended):
                try:
                    w.run.give(w.k, out)
                except Exception as exc:  # the run's own code (join, constraint, progress): that run only
                    self._end(w.run, exc, ended)
        for run in [r for r in self._runs if r.done]:
            self._end(run, None, ended)
        return ended

    def run_alone(self, run: TimelineSampling) -> torch.Tensor:
        """Sample one run (added here if it is not in yet) to the end: the solo path, though other runs
        in this batcher share its forwards. Its exception propagates."""
        self.add(run)
        while True:
            for r, exc in self.step():
                if r is run:
                    if exc is not None:
                        raise exc
                    return run.result()

    # -- filling ------------------------------------------------------------------------------------
    def _fill(self, ended: list[Ended]) -> list[WindowWork]:
        ready = [r for r in self._runs if r.pending]
        if not ready:
            return []
        length = ready[0].window_length
        group = [r for r in ready if r.window_length == length]
        count = dict.fromkeys(group, 0)
        budget = self.max_batch
        while budget > 0:
            took = False
            for r in group:
                if budget > 0 and count[r] < r.pending:
                    count[r] += 1
                    budget -= 1
                    took = True
            if not took:
                break
        # the next forward starts with the next run
        self._runs.remove(ready[0])
        self._runs.append(ready[0])
        work = []
        for r in group:
            if count[r]:
                try:
                    k, x, cond = r.take(count[r])
                except Exception as exc:  # a cancelled job
                    self._end(r, exc, ended)
                    continue
                work.append(WindowWork(r, k, x, cond, r.t))
        return work

    def _forward(self, work: list[WindowWork], ended: list[Ended]) -> list[tuple[WindowWork, torch.Tensor]]:
        try:
            return list(zip(work, self.forward(work), strict=True))
        except Exception as exc:
            runs = list(dict.fromkeys(w.run for w in work))
            if len(runs) == 1:
                self._end(runs[0], exc, ended)
                return []
        # a shared forward failed: each run's windows alone, so only the run that fails ends
        out = []
        for run in runs:
            mine = [w for w in work if w.run is run]
            try:
                out.extend(zip(mine, self.forward(mine), strict=True))
            except Exception as exc:
                self._end(run, exc, ended)
        return out

    def _end(self, run: TimelineSampling, exc: BaseException | None, ended: list[Ended]) -> None:
        if run in self._runs:
            self._runs.remove(run)
            ended.append((run, exc))


def sample_timeline(window_fn: WindowFn, audio_emb: torch.Tensor, sampler: Sampler, x_T: torch.Tensor,
                    frames: int, overlap: int, max_batch: int,
                    constraint: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """audio_emb [B, T, d], x_T [B, T, C] -> x0 [B, T, C] over the whole timeline, windows denoised by
    ``window_fn`` in chunks of at most ``max_batch``. ``constraint`` (x0 -> x0 on the joined timeline) is
    applied to every step's prediction and to the result."""
    run = TimelineSampling(sampler, x_T, audio_emb, frames, overlap, constraint)
    return WindowBatcher(lambda work: [window_fn(w.x, w.cond, w.t) for w in work], max_batch).run_alone(run)
