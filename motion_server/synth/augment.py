"""Audio augmentation that keeps phone timings true.

Every effect except :func:`tempo` leaves time where it was: the pitch shift preserves duration, gain and
noise are sample-wise, the reverb's impulse response has its direct path at lag 0, band limiting is a
zero-phase filter. :func:`tempo` stretches time and scales the phone times by the exact length ratio.
:func:`random_augment` draws a chain from a numpy Generator, so the same generator state gives the same
audio and the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from motion_server.phones import Phone, pad_to, scale_times

NOISE_KINDS = ("white", "pink", "babble")


def gain(audio: np.ndarray, db: float) -> np.ndarray:
    return (np.asarray(audio, np.float32) * np.float32(10.0 ** (db / 20.0))).astype(np.float32)


def pitch_shift(audio: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Duration-preserving pitch shift (phase vocoder + resampling; output length == input length)."""
    import librosa

    if abs(semitones) < 1e-6:
        return np.asarray(audio, np.float32)
    out = librosa.effects.pitch_shift(np.asarray(audio, np.float32), sr=sr, n_steps=float(semitones))
    return out.astype(np.float32)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    # 1/f power spectrum by shaping white noise in the frequency domain
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / np.sqrt(f), n)


def _babble(n: int, rng: np.random.Generator, sources: Sequence[np.ndarray]) -> np.ndarray:
    """Several talkers: random circular shifts of the source speech (some time-reversed), summed."""
    if not sources:
        raise ValueError("babble noise needs at least one source speech signal (babble_sources)")
    out = np.zeros(n, np.float64)
    for k in range(max(3, len(sources))):
        src = np.asarray(sources[k % len(sources)], np.float64)
        if src.size == 0:
            continue
        reps = int(np.ceil(n / src.size)) + 1
        tiled = np.tile(src, reps)
        start = int(rng.integers(0, src.size))
        seg = tiled[start:start + n]
        if rng.random() < 0.5:
            seg = seg[::-1]
        out += seg / (np.sqrt(np.mean(seg**2)) + 1e-9)
    return out


def add_noise(audio: np.ndarray, sr: int, snr_db: float, kind: str, rng: np.random.Generator,
              babble_sources: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Mix noise at ``snr_db`` relative to the speech power (measured over non-silent samples)."""
    x = np.asarray(audio, np.float64)
    if kind == "white":
        noise = rng.standard_normal(x.size)
    elif kind == "pink":
        noise = _pink(x.size, rng)
    elif kind == "babble":
        noise = _babble(x.size, rng, babble_sources)
    else:
        raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS}")
    active = np.abs(x) > 0.01 * (np.max(np.abs(x)) + 1e-12)
    p_speech = float(np.mean(x[active] ** 2)) if active.any() else float(np.mean(x**2))
    p_noise = float(np.mean(noise**2)) + 1e-20
    noise *= np.sqrt(p_speech / (p_noise * 10.0 ** (snr_db / 10.0)))
    return (x + noise).astype(np.float32)


def room_impulse(sr: int, rt60: float, rng: np.random.Generator, direct_to_reverb_db: float = 6.0) -> np.ndarray:
    """Synthetic room: unit direct path at lag 0 plus exponentially decaying noise (-60 dB at ``rt60``)."""
    n = max(2, int(rt60 * sr))
    t = np.arange(n) / sr
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 6.9078: -60 dB at rt60
    tail[: int(0.002 * sr) + 1] = 0.0  # first reflections arrive after ~2 ms
    tail *= 10.0 ** (-direct_to_reverb_db / 20.0) / (np.sqrt(np.sum(tail**2)) + 1e-12)
    tail[0] = 1.0
    return tail


def reverb(audio: np.ndarray, sr: int, rt60: float, rng: np.random.Generator,
           direct_to_reverb_db: float = 6.0) -> np.ndarray:
    """Convolve with :func:`room_impulse`; same length as the input, no delay on the direct sound."""
    from scipy.signal import fftconvolve

    x = np.asarray(audio, np.float64)
    ir = room_impulse(sr, rt60, rng, direct_to_reverb_db)
    return fftconvolve(x, ir)[: x.size].astype(np.float32)


def band_limit(audio: np.ndarray, sr: int, low: float = 300.0, high: float = 3400.0) -> np.ndarray:
    """Telephone band by a zero-phase Butterworth band-pass (filtfilt: no time shift)."""
    from scipy.signal import butter, sosfiltfilt

    high = min(high, 0.45 * sr)
    sos = butter(4, [low, high], btype="bandpass", fs=sr, output="sos")
    return sosfiltfilt(sos, np.asarray(audio, np.float64)).astype(np.float32)


def tempo(audio: np.ndarray, sr: int, phones: Sequence[Phone], rate: float) -> tuple[np.ndarray, list[Phone]]:
    """Speed up (``rate`` > 1) or slow down with pitch preserved; phone times scale by the length ratio."""
    import librosa

    if rate <= 0:
        raise ValueError(f"tempo rate must be > 0, got {rate}")
    x = np.asarray(audio, np.float32)
    if abs(rate - 1.0) < 1e-6:
        return x, list(phones)
    y = librosa.effects.time_stretch(x, rate=float(rate)).astype(np.float32)
    factor = y.size / x.size
    return y, pad_to(scale_times(phones, factor), y.size / sr)


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of :func:`random_augment`'s effects."""

    p_pitch: float = 0.3
    pitch_semitones: tuple[float, float] = (-2.0, 2.0)
    p_tempo: float = 0.3
    tempo_rate: tuple[float, float] = (0.85, 1.2)
    p_reverb: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.7)
    p_band: float = 0.15
    p_noise: float = 0.5
    snr_db: tuple[float, float] = (8.0, 35.0)
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    gain_db: tuple[float, float] = (-12.0, 3.0)


@dataclass(frozen=True)
class AugmentResult:
    audio: np.ndarray  # augmented speech
    phones: list[Phone]  # phones aligned with ``audio`` (moved only by a tempo change)
    params: dict  # what was applied, e.g. {"tempo": 1.1, "noise": "pink", "snr_db": 20.0, "gain_db": -3.0}
    clean: np.ndarray  # the input after the tempo change only: time-aligned, noise-free speech


def random_augment(audio: np.ndarray, sr: int, phones: Sequence[Phone], rng: np.random.Generator,
                   config: AugmentConfig | None = None,
                   babble_sources: Sequence[np.ndarray] = ()) -> AugmentResult:
    """A random chain (tempo, pitch, reverb, band, noise, gain).

    All draws happen up front in a fixed order, so whether an effect is used never shifts later draws.
    """
    c = config or AugmentConfig()
    u = rng.random(5)
    semis = float(rng.uniform(*c.pitch_semitones))
    rate = float(rng.uniform(*c.tempo_rate))
    rt60 = float(rng.uniform(*c.rt60))
    snr = float(rng.uniform(*c.snr_db))
    kind = str(c.noise_kinds[int(rng.integers(0, len(c.noise_kinds)))])
    gain_db = float(rng.uniform(*c.gain_db))
    rng_reverb, rng_noise = (np.random.default_rng(s) for s in rng.integers(0, 2**63, 2))

    params: dict = {}
    x = np.asarray(audio, np.float32)
    out_phones = list(phones)
    if u[0] < c.p_tempo:
        x, out_phones = tempo(x, sr, out_phones, rate)
        params["tempo"] = rate
    clean = x
    if u[1] < c.p_pitch:
        x = pitch_shift(x, sr, semis)
        params["pitch_semitones"] = semis
    if u[2] < c.p_reverb:
        x = reverb(x, sr, rt60, rng_reverb)
        params["rt60"] = rt60
    if u[3] < c.p_band:
        x = band_limit(x, sr)
        params["band"] = "telephone"
    if u[4] < c.p_noise and not (kind == "babble" and not babble_sources):
        x = add_noise(x, sr, snr, kind, rng_noise, babble_sources)
        params["noise"] = kind
        params["snr_db"] = snr
    x = gain(x, gain_db)
    params["gain_db"] = gain_db
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 0.99:  # avoid clipping; a limiter-like rescale keeps relative levels
        x = (x * np.float32(0.99 / peak)).astype(np.float32)
        params["rescaled"] = True
    return AugmentResult(x, out_phones, params, clean)
