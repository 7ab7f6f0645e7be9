"""Which torch device to run on (one rule for training, the diffusion engine and the benchmarks), and how
one process shares its CPU cores between the threads that compute (``CoreShare``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import torch


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Torch's CPU threads for the calling thread set to ``n`` while inside. With the OpenMP backend
    (torch's CPU builds) the count is per thread: other threads keep theirs."""
    prev = torch.get_num_threads()
    if n != prev:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != prev:
            torch.set_num_threads(prev)


def _lane_start() -> None:
    torch.get_num_threads()  # torch's lazy per-thread set-up first, or it could overwrite the 1 later
    torch.set_num_threads(1)


def _in_lane(fn: Callable[..., torch.Tensor], inference: bool, grad: bool, *args: torch.Tensor) -> torch.Tensor:
    # grad and inference mode are per thread: a lane computes as its caller does
    if inference:
        with torch.inference_mode():
            return fn(*args)
    with torch.set_grad_enabled(grad):
        return fn(*args)


class CoreShare:
    """Runs row-independent forwards (denoiser windows, speech-encoder windows) on the CPU cores no other
    forward of this process is using.

    A forward that starts while ``k`` others run gets ``cores // (k + 1)`` cores (at least one). It
    splits its rows over them: one chunk per core, each on its own thread at one torch thread (measured
    on the 2-core box with ``scripts/measure_cpu_forwards.py``: 20-80 denoiser rows in two such lanes take
    1.59-1.82 ms a row against 1.66-2.04 ms on two OpenMP threads). Too few rows to split (one 10 s
    speech window) take them as OpenMP threads instead. The motion server's job preparation and its
    shared denoiser forwards thus run side by side on one thread each under load, and a lone job gets
    every core. Rows never depend on how they are split or on the
    thread count (``tests/test_server_batch.py``; on AVX-512 CPUs that needs MKL's strict reproducibility,
    which importing ``motion_server`` turns on), so a job's result is the same batched or alone."""

    def __init__(self, cores: int) -> None:
        self.cores = max(1, int(cores))
        self._lock = threading.Lock()
        self._active = 0
        self._lanes = (ThreadPoolExecutor(self.cores - 1, thread_name_prefix="talkrig-lane", initializer=_lane_start)
                       if self.cores > 1 else None)

    @contextlib.contextmanager
    def claim(self) -> Iterator[int]:
        """The cores the caller may use now (counted as one more forward while inside)."""
        with self._lock:
            self._active += 1
            n = max(1, self.cores // self._active)
        try:
            yield n
        finally:
            with self._lock:
                self._active -= 1

    def run(self, fn: Callable[..., torch.Tensor], *rows: torch.Tensor, lane_rows: int = 1) -> torch.Tensor:
        """``fn(*rows)`` for tensors that share their first (row) dimension, on the cores free now: split
        into lanes of at least ``lane_rows`` rows each; a forward of fewer than ``lane_rows`` rows runs
        as is, at the calling thread's own torch threads (small work gains nothing from more)."""
        n_rows = int(rows[0].shape[0])
        if rows[0].device.type != "cpu" or n_rows < lane_rows:
            return fn(*rows)
        lanes = self._lanes
        with self.claim() as n:
            k = min(n, n_rows // max(1, lane_rows))
            if k <= 1 or lanes is None:
                with torch_threads(n):
                    return fn(*rows)
            parts = [r.tensor_split(k) for r in rows]
            mode = (torch.is_inference_mode_enabled(), torch.is_grad_enabled())
            try:
                futures = [lanes.submit(_in_lane, fn, *mode, *[p[i] for p in parts]) for i in range(1, k)]
            except RuntimeError:  # closed meanwhile (the server stopping): the caller's thread alone
                with torch_threads(n):
                    return fn(*rows)
            with torch_threads(1):
                first = fn(*[p[0] for p in parts])
            return torch.cat([first, *(f.result() for f in futures)])

    def close(self) -> None:
        """Stop the lane threads; later forwards run on their calling thread alone."""
        if self._lanes is not None:
            lanes, self._lanes = self._lanes, None
            lanes.shutdown(wait=False)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the GPU when torch sees one, else the CPU. Asking for CUDA without a visible GPU is an
    error that says what to pass instead, not a silent fall-back to the CPU."""
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"--device {device} requested but no CUDA GPU is visible; use --device cpu or auto")
    return torch.device(device)
