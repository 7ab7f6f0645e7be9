"""Phones (ARPAbet, seconds) -> a per-motion-frame index track the model can read next to the audio.

Optional conditioning: when a transcript is given, forced alignment gives exact phones, and the model
adds a learned embedding of the phone under each frame to its audio embedding. Audio alone is ambiguous
for lip closures on voices unlike the training ones (a /b/ and a /d/ sound alike through a phone line);
the transcript removes that ambiguity. Index 0 means "unknown" (no transcript, or a symbol the model was
not trained on) and embeds to zero, so a model trained with the track still runs on audio alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

# ARPAbet without stress marks, as the synthetic corpus and the pocketsphinx aligner write them.
DEFAULT_SYMBOLS = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G",
                   "HH", "IH", "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH",
                   "UH", "UW", "V", "W", "Y", "Z", "ZH")


class PhoneLike(Protocol):
    symbol: str
    start: float
    end: float


def _clean(symbol: str) -> str:
    return symbol.strip().upper().rstrip("012")


def phone_track(phones: Sequence[PhoneLike], n_frames: int, fps: float,
                symbols: Sequence[str] = DEFAULT_SYMBOLS) -> np.ndarray:
    """[n_frames] int64: 1 + index of the phone covering each frame time ``t / fps``; 0 where no phone
    covers the frame or its symbol is not in ``symbols``.

    A phone shorter than a frame interval can fall between two frame times and cover none; such a
    phone still claims the frame nearest its middle (a 30 ms /b/ must close the lips somewhere)."""
    index = {s: i + 1 for i, s in enumerate(symbols)}
    track = np.zeros(int(n_frames), np.int64)
    for p in phones:
        a = max(0, int(np.ceil(float(p.start) * fps - 1e-9)))
        b = min(int(n_frames), int(np.ceil(float(p.end) * fps - 1e-9)))
        if b > a:
            track[a:b] = index.get(_clean(p.symbol), 0)
    for p in phones:
        a = int(np.ceil(float(p.start) * fps - 1e-9))
        b = int(np.ceil(float(p.end) * fps - 1e-9))
        if b - a <= 1:  # covers at most one frame: make sure it gets its middle frame
            mid = int(round(0.5 * (float(p.start) + float(p.end)) * fps))
            if 0 <= mid < n_frames:
                track[mid] = index.get(_clean(p.symbol), 0)
    return track


def jitter_and_drop(track: np.ndarray, rng: np.random.Generator, drop: float, jitter: int) -> np.ndarray:
    """Training-time corruption of a batch of tracks [B, T]: each row is blanked (all unknown) with
    probability ``drop`` so the audio-only path keeps learning, else shifted by up to ``jitter`` frames
    (forced alignment on real speech is off by a frame or so)."""
    out = np.array(track, copy=True)
    j = int(jitter)
    for r in range(out.shape[0]):
        if rng.random() < float(drop):
            out[r] = 0
        elif j > 0:
            s = int(rng.integers(-j, j + 1))
            if s > 0:
                out[r, s:] = track[r, :-s]
                out[r, :s] = track[r, 0]
            elif s < 0:
                out[r, :s] = track[r, -s:]
                out[r, s:] = track[r, -1]
    return out
