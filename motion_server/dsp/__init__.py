"""Small signal-processing helpers every layer shares (numpy and soxr only, so importing them is cheap:
scipy.signal and scipy.ndimage cost a worker process 0.5-1 s to import)."""

from .resample import StreamResampler, resample
from .smooth import gaussian_filter1d

__all__ = ["StreamResampler", "gaussian_filter1d", "resample"]
