"""Which torch device to run on (one rule for training, the diffusion engine and the benchmarks), and
the lock that keeps this process's thread-count changes from meeting each other."""

from __future__ import annotations

import threading

import torch

# torch.set_num_threads is process-wide, and a CPU kernel's result can depend on how many threads split
# it. The motion server prepares jobs (the speech encoder) on other threads while denoiser forwards run:
# each of these holds this lock while it sets its thread count and computes, so neither runs at the
# other's setting and a job's result is the same batched or alone.
THREADS_LOCK = threading.RLock()


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
