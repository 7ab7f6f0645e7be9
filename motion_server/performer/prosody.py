"""Cheap prosody analysis for the performer: loudness, F0, pitch accents and phrase boundaries.

F0 uses a vectorised normalised autocorrelation (no pYIN): the performer only needs where the voice
rises and gets louder, not exact pitch, and it must stay fast on minutes of audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from motion_server.dsp import resample

from ..phones import Phone

_HOP_S = 0.02
_WIN_S = 0.04
_F0_MIN, _F0_MAX = 60.0, 450.0
_ANALYSIS_SR = 8000


@dataclass(frozen=True)
class Prosody:
    speech: np.ndarray  # [T] bool, someone is speaking at this frame
    energy: np.ndarray  # [T] loudness in [0, 1] (speech-relative)
    accents: list[tuple[float, float]]  # (time s, strength ~0.5..2)
    phrase_starts: list[float]  # onsets of speech after a pause (s)
    phrase_ends: list[float]  # ends of speech before a pause (s)
    pauses: list[tuple[float, float]]  # (start, end) of pauses inside the utterance


def _frames(x: np.ndarray, win: int, hop: int) -> np.ndarray:
    """[n, win] read-only strided view (no copy)."""
    if x.size < win:
        x = np.pad(x, (0, win - x.size))
    n = 1 + (x.size - win) // hop
    return np.lib.stride_tricks.as_strided(x, (n, win), (x.strides[0] * hop, x.strides[0]), writeable=False)


def f0_and_energy(audio: np.ndarray, sr: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per 20 ms: (f0 Hz or NaN where unvoiced, rms energy, periodicity in [0, 1]).

    Works at 8 kHz (voice pitch lives far below 4 kHz) and in blocks, so memory stays bounded on long audio.
    """
    x = np.asarray(audio, np.float32).reshape(-1)
    if sr != _ANALYSIS_SR:
        x = resample(x, int(sr), _ANALYSIS_SR)
    sr = _ANALYSIS_SR
    hop, win = int(round(_HOP_S * sr)), int(round(_WIN_S * sr))
    fr_all = _frames(x, win, hop)
    nfft = 1 << int(np.ceil(np.log2(2 * win)))
    window = np.hanning(win).astype(np.float32)
    lag_lo, lag_hi = int(sr / _F0_MAX), min(int(sr / _F0_MIN), win - 1)
    rms = np.empty(len(fr_all))
    lag = np.empty(len(fr_all))
    period = np.empty(len(fr_all))
    for a in range(0, len(fr_all), 4096):
        fr = fr_all[a : a + 4096]
        fr = fr - fr.mean(axis=1, keepdims=True)
        rms[a : a + len(fr)] = np.sqrt((fr.astype(np.float64) ** 2).mean(axis=1))
        # numpy's FFT, not scipy.fft: importing scipy.fft costs every worker process ~0.2 s
        spec = np.fft.rfft(fr * window, nfft, axis=1)
        ac = np.fft.irfft((spec.real**2 + spec.imag**2).astype(np.float32), nfft, axis=1)[:, :win]
        seg = ac[:, lag_lo:lag_hi]
        lag[a : a + len(fr)] = lag_lo + seg.argmax(axis=1)
        period[a : a + len(fr)] = seg.max(axis=1) / np.maximum(ac[:, 0], 1e-12)
    loud = rms > max(0.1 * np.percentile(rms, 95), 1e-4)
    voiced = (period > 0.45) & loud
    f0 = np.where(voiced, sr / lag, np.nan)
    return f0, rms, np.clip(period, 0, 1)


def _to_frames(values: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    src_t = np.arange(values.size) * _HOP_S + 0.5 * _WIN_S
    t = np.arange(n_frames) / fps
    return np.interp(t, src_t, values) if values.size else np.zeros(n_frames)


def _local_peaks(s: np.ndarray, thresh: float, min_gap: int) -> list[int]:
    """Greedy: highest first, suppressing neighbours within ``min_gap`` frames."""
    order = np.argsort(-s)
    taken: list[int] = []
    for i in order:
        if s[i] < thresh:
            break
        if all(abs(int(i) - j) >= min_gap for j in taken):
            taken.append(int(i))
    return sorted(taken)


def analyse_prosody(
    phones: Sequence[Phone], audio: np.ndarray | None, sr: int, n_frames: int, fps: float
) -> Prosody:
    t = np.arange(n_frames) / fps
    # where speech is: from phones when there are any, else from loudness
    speech = np.zeros(n_frames, bool)
    spoken = [p for p in phones if p.symbol != "SIL"]
    for p in spoken:
        speech[(t >= p.start - 0.5 / fps) & (t < p.end)] = True
    energy = speech.astype(np.float64) * 0.6
    accents: list[tuple[float, float]] = []
    if audio is not None and np.asarray(audio).size >= int(0.05 * sr):
        f0, rms, _ = f0_and_energy(audio, sr)
        db = 20 * np.log10(np.maximum(rms, 1e-5))
        loud = db > np.percentile(db, 95) - 30
        if not spoken:
            speech = _to_frames(loud.astype(float), n_frames, fps) > 0.5
        ref = db[loud] if loud.any() else db
        energy = np.clip((_to_frames(db, n_frames, fps) - (np.median(ref) - 12)) / 24, 0, 1) * speech
        # salience: loud and high-pitched relative to this speaker
        z_db = (db - np.median(ref)) / (np.std(ref) + 1e-6)
        logf = np.log(f0)
        ok = np.isfinite(logf)
        z_f0 = np.zeros_like(db)
        if ok.sum() > 5:
            z_f0[ok] = (logf[ok] - np.median(logf[ok])) / (np.std(logf[ok]) + 1e-6)
        sal = 0.55 * z_f0 + 0.45 * z_db
        k = max(1, int(round(0.09 / _HOP_S)))
        sal = np.convolve(sal, np.ones(k) / k, mode="same")  # ~90 ms smoothing
        sal_f = _to_frames(sal, n_frames, fps) * speech
        for i in _local_peaks(sal_f, 0.7, max(1, int(0.45 * fps))):
            accents.append((float(t[i]), float(np.clip(sal_f[i], 0.5, 2.0))))
    starts, ends, pauses = _phrases(speech, fps)
    return Prosody(speech, energy.astype(np.float32), accents, starts, ends, pauses)


def _phrases(speech: np.ndarray, fps: float, min_pause_s: float = 0.25):
    """Phrase boundaries from a speech mask: pauses shorter than ``min_pause_s`` do not split phrases."""
    starts: list[float] = []
    ends: list[float] = []
    pauses: list[tuple[float, float]] = []
    edges = np.diff(np.concatenate([[0], speech.astype(np.int8), [0]]))
    on = np.flatnonzero(edges == 1)
    off = np.flatnonzero(edges == -1)
    if on.size == 0:
        return starts, ends, pauses
    runs = [[int(on[0]), int(off[0])]]
    for a, b in zip(on[1:], off[1:], strict=True):
        if (a - runs[-1][1]) / fps < min_pause_s:
            runs[-1][1] = int(b)
        else:
            runs.append([int(a), int(b)])
    for k, (a, b) in enumerate(runs):
        starts.append(a / fps)
        ends.append(b / fps)
        if k + 1 < len(runs):
            pauses.append((b / fps, runs[k + 1][0] / fps))
    return starts, ends, pauses
