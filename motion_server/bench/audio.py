"""Test audio of any length for benchmarks: real speech tiled to length, or a speech-like fallback."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from motion_server.options import SAMPLE_RATE

REPO = Path(__file__).resolve().parents[2]
# Real speech preferred (engines' cost can depend on content: phones, silences). Searched in order: the
# JFK clip shipped in the repository (so a clean clone measures real speech), then the shared copy.
CANDIDATES = (
    REPO / "examples" / "jfk.flac",
    REPO.parent / "shared" / "data" / "speech" / "whisper__jfk.flac",
)


@lru_cache(maxsize=4)
def source_speech(sr: int = SAMPLE_RATE) -> tuple[np.ndarray, str]:
    from motion_server.audio.io import load_audio

    for path in CANDIDATES:
        if path.is_file():
            try:
                return load_audio(path, sr=sr), str(path.name)
            except Exception:  # an unreadable candidate falls through to the next
                continue
    return babble(11.0, sr), "synthetic babble"


def babble(seconds: float, sr: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Speech-like signal: a gliding harmonic voice, syllable-rate (~4 Hz) loudness, fricative noise bursts."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.3 * t) + 10 * np.sin(2 * np.pi * 2.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 8))
    syll = np.clip(np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)) + 0.3, 0, None)
    pauses = (np.sin(2 * np.pi * 0.15 * t) > -0.8).astype(np.float64)
    noise = rng.standard_normal(n) * (np.sin(2 * np.pi * 1.3 * t) > 0.7)
    x = (0.25 * voice * syll + 0.05 * noise) * pauses
    return (0.5 * x / (np.abs(x).max() + 1e-9)).astype(np.float32)


def speech_of_length(seconds: float, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, str]:
    """``seconds`` of audio: the source clip repeated with 0.3 s pauses and cut to length."""
    src, name = source_speech(sr)
    gap = np.zeros(int(0.3 * sr), np.float32)
    unit = np.concatenate([src, gap])
    n = int(round(seconds * sr))
    reps = int(np.ceil(n / len(unit)))
    return np.tile(unit, reps)[:n].astype(np.float32), name
