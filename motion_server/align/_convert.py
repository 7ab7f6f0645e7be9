"""PocketSphinx output -> ``Phone`` lists."""

from __future__ import annotations

import re

import numpy as np

from motion_server.phones import SIL, Phone, arpabet_symbols, merge_silences

from .decoder import FRAME_RATE, SAMPLE_RATE

_VARIANT = re.compile(r"\(\d+\)$")


def phone_symbol(name: str) -> str:
    """A decoder phone/filler name as ARPAbet or SIL (fillers like +NSN+, +SPN+, <sil> are silence)."""
    s = re.sub(r"\d", "", name.strip().upper())
    return s if s in frozenset(arpabet_symbols()) and s != "" else SIL


def word_label(name: str) -> str | None:
    w = _VARIANT.sub("", name)
    return None if (not w or w[0] in "<[+") else w


def frames_to_s(frame: int) -> float:
    return frame / FRAME_RATE


def quiet_to_silence(phones: list[Phone], pcm: np.ndarray, floor_db: float = 32.0) -> list[Phone]:
    """Phones far quieter than the loud parts of the clip are background, not speech: relabel SIL.
    Phone loops otherwise "hear" consonants in hiss and room noise."""
    if not phones or pcm.size < SAMPLE_RATE // 10:
        return phones
    x = pcm.astype(np.float64) / 32768.0
    hop = SAMPLE_RATE // FRAME_RATE
    m = x.size // hop
    db = 10 * np.log10((x[: m * hop].reshape(m, hop) ** 2).mean(axis=1) + 1e-10)
    ref = np.percentile(db, 95)
    out = []
    for p in phones:
        a, b = int(p.start * FRAME_RATE), max(int(p.end * FRAME_RATE), int(p.start * FRAME_RATE) + 1)
        seg = db[a:b]
        quiet = seg.size == 0 or float(seg.max()) < ref - floor_db
        out.append(Phone(SIL, p.start, p.end) if quiet and p.symbol != SIL else p)
    return merge_silences(out)
