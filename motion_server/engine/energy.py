"""EnergyEngine ("energy" in the engine registry): the jaw follows the smoothed loudness envelope, with a
little mouthFunnel / mouthLowerDown. This is what cheap lip-sync tools do; it opens the mouth on loud
syllables but cannot close the lips for /p b m/, which is what the phone metrics expose. ``talkrig eval``
compares every model with it (``motion_server.evaluation.baselines``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from motion_server import __version__
from motion_server.audio.loudness import audio_envelope
from motion_server.dsp import gaussian_filter1d
from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_INDEX, NUM_CHANNELS

from .base import CancelToken, GenerateOptions, ProgressFn, check_audio

# Loudness below (peak - FLOOR_DB) keeps the mouth shut; the range up to the peak maps to 0..1.
FLOOR_DB = 35.0
# Channel gains at full loudness (weights): a loud vowel opens the jaw about half way.
GAINS = {"jawOpen": 0.55, "mouthLowerDownLeft": 0.15, "mouthLowerDownRight": 0.15, "mouthFunnel": 0.1}
SMOOTH_SIGMA_FRAMES = 1.5


def loudness_level(audio: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """Per-frame loudness in [0, 1]: RMS in dB relative to the clip's 98th percentile, FLOOR_DB range."""
    env = audio_envelope(audio, sr, fps, n_frames)
    db = 20 * np.log10(env + 1e-8)
    ref = float(np.percentile(db, 98)) if len(db) else 0.0
    return np.clip((db - (ref - FLOOR_DB)) / FLOOR_DB, 0.0, 1.0)


class EnergyEngine:
    """Loudness-driven jaw: no phones, no model. Deterministic; ``seed`` has no effect."""

    name = "energy"

    def __init__(self, **_: Any) -> None:
        pass

    def generate(
        self,
        audio: np.ndarray,
        sr: int,
        options: GenerateOptions | None = None,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> FaceMotion:
        options = options or GenerateOptions()
        x = check_audio(audio, sr)
        n = max(1, int(round(len(x) / sr * options.fps)))
        level = loudness_level(x, sr, options.fps, n)
        if cancel:
            cancel.check()
        level = gaussian_filter1d(level, SMOOTH_SIGMA_FRAMES, mode="nearest") if n > 1 else level
        w = np.zeros((n, NUM_CHANNELS), np.float32)
        for name, gain in GAINS.items():
            w[:, ARKIT_INDEX[name]] = np.clip(level * gain * options.intensity, 0, 1)
        if progress:
            progress(1.0, "done")
        meta = {"model": "energy", "version": __version__, "seed": options.seed, "sample_rate": sr}
        return FaceMotion.from_arrays(w, None, options.fps, meta)

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "device": "cpu", "model": "loudness envelope", "version": __version__,
                "styles": [], "options": ["intensity", "fps"]}

