"""Timing statistics and peak-memory probes (Linux /proc; no psutil)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _status_kib(field: str, pid: int | None = None) -> int | None:
    try:
        for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    k = _status_kib("VmRSS")
    return None if k is None else round(k / 1024, 1)


def peak_rss_mib(pid: int | None = None) -> float | None:
    """High-water RSS of this process (or of process ``pid``) since start or the last ``reset_peak_rss``."""
    k = _status_kib("VmHWM", pid)
    return None if k is None else round(k / 1024, 1)


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU time of this process (or of process ``pid``, all its threads) so far."""
    import os

    try:
        fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to /proc/self/clear_refs). False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def gpu_reset_peak() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def gpu_peak_mib() -> float | None:
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def spread(times: list[float]) -> dict[str, float]:
    """median, min, max and interquartile range of wall times (seconds)."""
    a = np.asarray(times, np.float64)
    q1, q3 = np.percentile(a, [25, 75])
    return {"median": float(statistics.median(times)), "min": float(a.min()), "max": float(a.max()),
            "iqr": float(q3 - q1)}


def measure(fn: Callable[[], Any], repeats: int, warmup: int) -> dict[str, Any]:
    """Run ``fn`` warmup times untimed, then ``repeats`` times timed; peak memory over the timed runs."""
    for _ in range(warmup):
        fn()
    reset_peak_rss()
    gpu_reset_peak()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return {"times_s": [round(t, 5) for t in times], **spread(times), "peak_rss_mib": peak_rss_mib(),
            "gpu_peak_mib": gpu_peak_mib()}
