"""Voice quality applied after synthesis: vocal effort, tremor and breathiness.

None of the synthesizers can do these, yet they are the emotional cues that survive what the corpus's
augmentation does to a clip (a random gain hides loudness, a random tempo hides speaking rate, a pitch
shift hides mean F0): effort tilts the spectrum (loud, tense speech has more energy above 1 kHz, soft
speech less), tremor is a 5.5 Hz wobble of loudness and pitch (a shaky, frightened voice), breath mixes
in aspiration noise that follows the speech envelope (a sigh). Every effect keeps the length and timing
of the audio, so phone times stay valid. Deterministic: the same input gives the same output.
"""

from __future__ import annotations

import zlib

import numpy as np

TREMOR_HZ = 5.5
_SHELF_HZ = 1000.0  # vocal effort moves energy above roughly the first formants
_EFFORT_DB_PER_OCTAVE = 12.0  # shelf gain per doubling of effort
_TREMOR_AM = 0.35  # loudness modulation depth at tremor = 1
_TREMOR_FM = 0.04  # relative pitch wobble at tremor = 1
_BREATH_BAND = (1500.0, 6000.0)
_MIN_SAMPLES = 64  # the zero-phase filters need some signal to pad


def _sos(kind: str, freq: float | tuple[float, float], sr: int) -> np.ndarray:
    from scipy.signal import butter

    edges = np.minimum(np.atleast_1d(np.asarray(freq, np.float64)), 0.95 * sr / 2.0)  # below Nyquist
    return butter(2, edges if edges.size > 1 else float(edges[0]), btype=kind, fs=sr, output="sos")


def effort_tilt(audio: np.ndarray, sr: int, effort: float) -> np.ndarray:
    """High shelf above 1 kHz of ``12 * log2(effort)`` dB (effort 2 = +12 dB, 0.5 = -12 dB)."""
    from scipy.signal import sosfiltfilt

    gain = 10.0 ** (_EFFORT_DB_PER_OCTAVE * np.log2(effort) / 20.0)
    high = sosfiltfilt(_sos("highpass", _SHELF_HZ, sr), audio)
    return (audio + (gain - 1.0) * high).astype(np.float32)


def tremor(audio: np.ndarray, sr: int, depth: float) -> np.ndarray:
    """Loudness and pitch modulated together at 5.5 Hz; ``depth`` 1 = 35 % loudness, 4 % pitch."""
    t = np.arange(audio.size, dtype=np.float64) / sr
    w = 2.0 * np.pi * TREMOR_HZ
    # a delay of D*sin(wt) scales the instantaneous frequency by 1 - D*w*cos(wt)
    delay = (_TREMOR_FM * depth / w) * np.sin(w * t)
    wobbled = np.interp(t - delay, t, audio)
    gain = 1.0 + _TREMOR_AM * depth * np.sin(w * t + 0.5)
    return (wobbled * gain).astype(np.float32)


def breath(audio: np.ndarray, sr: int, amount: float) -> np.ndarray:
    """Mix band-limited noise that follows the speech envelope; ``amount`` 1 = noise as loud as the voice."""
    from scipy.ndimage import uniform_filter1d
    from scipy.signal import sosfiltfilt

    env = np.sqrt(np.maximum(uniform_filter1d(audio.astype(np.float64) ** 2, max(1, int(0.02 * sr))), 0.0))
    # seeded by the audio itself: deterministic, yet no two clips share one noise waveform
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(audio, np.float32).tobytes()))
    noise = sosfiltfilt(_sos("bandpass", _BREATH_BAND, sr), rng.standard_normal(audio.size))
    noise /= max(float(np.sqrt(np.mean(noise ** 2))), 1e-12)
    return (audio * (1.0 - 0.3 * amount) + amount * env * noise).astype(np.float32)


def apply_voice_quality(audio: np.ndarray, sr: int, effort: float = 1.0, tremor_depth: float = 0.0,
                        breathiness: float = 0.0) -> np.ndarray:
    """All three effects; the defaults leave the audio untouched (as does audio too short to filter)."""
    x = np.asarray(audio, np.float32)
    if x.size < _MIN_SAMPLES:
        return x
    if abs(effort - 1.0) > 1e-6:
        x = effort_tilt(x, sr, effort)
    if tremor_depth > 1e-6:
        x = tremor(x, sr, tremor_depth)
    if breathiness > 1e-6:
        x = breath(x, sr, breathiness)
    return x
