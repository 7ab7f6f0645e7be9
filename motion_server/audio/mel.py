"""Mel power spectrograms in numpy, as librosa computes them (Slaney mel scale and area normalisation,
centred frames, zero padding, periodic Hann window).

The model's features were defined with librosa's ``melspectrogram`` and ``filters.mel``; computing
them here gives the same rows to float32 rounding (``tests/test_mel.py`` compares the two) without
importing librosa's feature module, whose first use pulls in scipy.signal and numba caches: about
1.5 s of every worker's and every command's start-up, more than the model's own load.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_F_SP = 200.0 / 3  # Slaney: linear below 1 kHz, 200/3 Hz per mel
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0  # log-spaced above 1 kHz


def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    f = np.asarray(f, np.float64)
    lin = f / _F_SP
    with np.errstate(divide="ignore"):
        log = _MIN_LOG_MEL + np.log(np.maximum(f, 1e-30) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(m: np.ndarray | float) -> np.ndarray:
    m = np.asarray(m, np.float64)
    return np.where(m >= _MIN_LOG_MEL, _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL)), _F_SP * m)


@lru_cache(maxsize=8)
def mel_filters(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32 triangular filters on the Slaney mel scale, each scaled to unit
    area (librosa's ``filters.mel`` with its defaults ``htk=False, norm='slaney'``). Read-only: cached."""
    fmax = sr / 2.0 if fmax is None else float(fmax)
    fft_hz = np.fft.rfftfreq(n_fft, 1.0 / sr)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    width = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rise = -ramps[:-2] / width[:-1, None]
    fall = ramps[2:] / width[1:, None]
    w = np.maximum(0.0, np.minimum(rise, fall)).astype(np.float32)
    w *= (2.0 / (edges[2:] - edges[:-2]))[:, None].astype(np.float32)
    w.setflags(write=False)
    return w


@lru_cache(maxsize=8)
def _window(win: int, n_fft: int) -> np.ndarray:
    """Periodic Hann of ``win`` samples, centred in ``n_fft`` with zeros either side."""
    n = np.arange(win, dtype=np.float64)
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / win)
    out = np.zeros(n_fft, np.float64)
    left = (n_fft - win) // 2
    out[left: left + win] = w
    return out.astype(np.float32)


# frames per block of the STFT: numpy < 2 computes rfft in float64, so a 10 min take done in one go
# would hold ~0.6 GB of frames and spectra at once; blocks keep that to a few MB
BLOCK_FRAMES = 2048


def mel_power(audio: np.ndarray, sr: int, n_fft: int, hop: int, n_mels: int, win: int | None = None,
              fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """[n_mels, frames] float32 mel power spectrogram (librosa's ``feature.melspectrogram`` with
    ``power=2, center=True``): frames centred on ``k * hop`` (the signal zero-padded by ``n_fft // 2``
    either side), ``1 + len // hop`` of them, each the |STFT|^2 of a Hann-windowed ``win`` samples."""
    y = np.asarray(audio, np.float32)
    if y.ndim != 1:
        raise ValueError(f"audio must be mono 1-D, got shape {list(y.shape)}")
    pad = n_fft // 2
    y = np.pad(y, (pad, pad))
    n = 1 + (len(y) - n_fft) // hop
    if n < 1:
        raise ValueError(f"audio of {len(audio)} samples is shorter than one {n_fft}-sample frame")
    frames = np.lib.stride_tricks.as_strided(y, (n, n_fft), (y.strides[0] * hop, y.strides[0]), writeable=False)
    window = _window(win or n_fft, n_fft)
    filters = mel_filters(int(sr), int(n_fft), int(n_mels), float(fmin), fmax)
    out = np.empty((n_mels, n), np.float32)
    for a in range(0, n, BLOCK_FRAMES):
        spec = np.fft.rfft(frames[a: a + BLOCK_FRAMES] * window, axis=1).astype(np.complex64)
        out[:, a: a + BLOCK_FRAMES] = filters @ (np.abs(spec) ** 2).T
    return out
