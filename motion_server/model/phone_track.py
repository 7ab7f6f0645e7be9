"""Phones (ARPAbet, seconds) -> a per-motion-frame index track the model can read next to the audio.

Optional conditioning: when a transcript is given, forced alignment gives exact phones, and the model
adds a learned embedding of the phone under each frame to its audio embedding. Audio alone is ambiguous
for lip closures on voices unlike the training ones (a /b/ and a /d/ sound alike through a phone line);
the transcript removes that ambiguity. Index 0 means "unknown" (no transcript, or a symbol the model was
not trained on) and embeds to zero, so a model trained with the track still runs on audio alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from motion_server.phones import Phone, arpabet_symbols

# The project's ARPAbet inventory (SIL first, no stress marks), as the corpus and the aligner write it.
DEFAULT_SYMBOLS = arpabet_symbols()


def _clean(symbol: str) -> str:
    return symbol.strip().upper().rstrip("012")


def phone_track(phones: Sequence[Phone], n_frames: int, fps: float,
                symbols: Sequence[str] = DEFAULT_SYMBOLS) -> np.ndarray:
    """[n_frames] int64: 1 + index of the phone covering each frame time ``t / fps``; 0 where no phone
    covers the frame or its symbol is not in ``symbols``.

    A phone shorter than a frame interval can fall between two frame times and cover none; such a
    phone still claims the frame nearest its middle (a 30 ms /b/ must close the lips somewhere)."""
    index = {s: i + 1 for i, s in enumerate(symbols)}
    track = np.zeros(int(n_frames), np.int64)
    short: list[tuple[int, int]] = []  # (middle frame, id) of phones covering at most one frame time
    for p in phones:
        ident = index.get(_clean(p.symbol), 0)
        a = int(np.ceil(float(p.start) * fps - 1e-9))
        b = int(np.ceil(float(p.end) * fps - 1e-9))
        track[max(a, 0):min(b, int(n_frames))] = ident
        if b - a <= 1:
            short.append((int(round(0.5 * (float(p.start) + float(p.end)) * fps)), ident))
    for mid, ident in short:  # after the long phones, so a neighbour cannot paint over them
        if 0 <= mid < n_frames:
            track[mid] = ident
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
