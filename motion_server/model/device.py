"""Which torch device to run on: one rule for training, the diffusion engine and the benchmarks."""

from __future__ import annotations

import torch


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
