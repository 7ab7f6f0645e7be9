"""Packing forwards that several threads ask for at once into one batch.

The motion server prepares jobs side by side, and on a GPU each job's speech-encoder windows are too few
to fill a forward. A ``ForwardPacker`` owns one thread that runs those forwards: requests waiting together
with the same function and row shape go out as one batch (up to ``max_rows`` rows), and each caller gets
its own rows back. Nothing waits for company: a request alone runs alone at once, and requests batch when
they arrive while the previous forward runs. On a CPU a batched encoder window costs what a solo one
does or more (``scripts/measure_cpu_forwards.py`` on the 2-core box: 137 ms per 10 s window alone on one
thread, 147 ms eight at a time), so the engine uses it on a
GPU only. Rows must not depend on the rest of their batch.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(eq=False)
class _Request:
    fn: Callable[[torch.Tensor], torch.Tensor]
    x: torch.Tensor
    future: Future = field(default_factory=Future)

    @property
    def key(self) -> tuple[Any, ...]:
        return (id(self.fn), tuple(self.x.shape[1:]), self.x.dtype, self.x.device)


class ForwardPacker:
    def __init__(self, max_rows: int, name: str = "talkrig-packer") -> None:
        self.max_rows = max(1, int(max_rows))
        self.name = name
        self.forwards = 0  # batched forwards run (tests and benchmarks read these)
        self.largest = 0  # most requests in one forward
        self._queue: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def waiting(self) -> int:
        """Requests queued for the next forward."""
        with self._cv:
            return len(self._queue)

    def run(self, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``fn(x)`` for a batch of independent rows ``x``, packed with other threads' waiting requests."""
        req = _Request(fn, x)
        with self._cv:
            if self._closed:
                return fn(x)  # after close: on the calling thread, as without a packer
            self._queue.append(req)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cv.notify()
        return req.future.result()

    def close(self) -> None:
        """Finish what is queued, then stop the thread; later calls run on their caller's thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _take(self) -> list[_Request] | None:
        with self._cv:
            while not self._queue and not self._closed:
                self._cv.wait()
            if not self._queue:
                self._thread = None
                return None
            first = self._queue.popleft()
            batch, rows = [first], int(first.x.shape[0])
            for r in list(self._queue):  # oldest first, same function and row shape, within the bound
                if r.key == first.key and rows + int(r.x.shape[0]) <= self.max_rows:
                    self._queue.remove(r)
                    batch.append(r)
                    rows += int(r.x.shape[0])
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                with torch.inference_mode():
                    out = batch[0].fn(torch.cat([r.x for r in batch]) if len(batch) > 1 else batch[0].x)
                self.forwards += 1
                self.largest = max(self.largest, len(batch))
                for r, part in zip(batch, out.split([int(r.x.shape[0]) for r in batch]), strict=True):
                    r.future.set_result(part)
            except BaseException as exc:  # every caller of this forward sees its error
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(exc)
