"""A tiny structured synthetic data set for tests and smoke runs (no speech synthesiser needed).

Each clip is a run of "syllables": a harmonic tone burst whose loudness envelope is mirrored by
jawOpen (and, inversely, mouthClose), plus random blinks and a slow head sway; two "styles" differ in
mouth amplitude and smile. Written as ``<name>.wav`` + ``<name>.npz`` pairs (the capture layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from motion_server.options import SAMPLE_RATE
from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_INDEX

SR = SAMPLE_RATE
FPS = 30.0


def toy_clip(rng: np.random.Generator, seconds: float, style: int = 0) -> tuple[np.ndarray, FaceMotion]:
    n = int(seconds * SR)
    T = int(round(seconds * FPS))
    env = np.zeros(n, np.float32)
    t = 0.2
    while t < seconds - 0.4:
        d = rng.uniform(0.12, 0.3)
        a, b = int(t * SR), int((t + d) * SR)
        env[a:b] = np.sin(np.linspace(0, np.pi, b - a)) * rng.uniform(0.5, 1.0)
        t += d + rng.uniform(0.05, 0.25)
    f0 = rng.uniform(100, 220)
    ts = np.arange(n) / SR
    tone = sum(np.sin(2 * np.pi * f0 * k * ts) / k for k in range(1, 6))
    audio = (0.3 * env * tone + 0.003 * rng.standard_normal(n)).astype(np.float32)
    fr = np.clip((np.arange(T) / FPS * SR).astype(int), 0, n - 1)
    e = env[fr]
    w = np.zeros((T, 52), np.float32)
    amp = 0.8 if style == 0 else 0.45
    w[:, ARKIT_INDEX["jawOpen"]] = amp * e
    w[:, ARKIT_INDEX["mouthClose"]] = 0.3 * (1 - e) * (e > 0.05)
    w[:, ARKIT_INDEX["mouthSmileLeft"]] = w[:, ARKIT_INDEX["mouthSmileRight"]] = 0.05 + 0.4 * style
    for c in rng.uniform(0.3, seconds - 0.3, size=max(1, int(seconds / 3))):
        i = int(c * FPS)
        prof = np.array([0.4, 0.9, 1.0, 0.7, 0.3])
        sl = slice(i, min(T, i + 5))
        for ch in ("eyeBlinkLeft", "eyeBlinkRight"):
            w[sl, ARKIT_INDEX[ch]] = prof[: sl.stop - sl.start]
    head = np.zeros((T, 6), np.float32)
    ph = rng.uniform(0, 6.28)
    head[:, 0] = 0.05 * np.sin(np.arange(T) / FPS * 1.3 + ph)
    head[:, 1] = 0.04 * np.sin(np.arange(T) / FPS * 0.7 + ph)
    return audio, FaceMotion.from_arrays(w, head, fps=FPS)


def write_toy_folder(root: str | Path, n_clips: int = 6, seconds: float = 4.0, seed: int = 0) -> Path:
    """Write ``n_clips`` wav+npz pairs into ``root`` and return it."""
    import soundfile as sf

    from rig_mapping.formats import save_motion

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_clips):
        audio, motion = toy_clip(rng, seconds * rng.uniform(0.8, 1.2), style=i % 2)
        sf.write(root / f"clip{i:03d}.wav", audio, SR)
        save_motion(motion, root / f"clip{i:03d}.npz", overwrite=True)
    return root
