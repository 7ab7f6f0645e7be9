"""Phones from speech without a transcript: a PocketSphinx phone loop (any language, singing, noise)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from motion_server.phones import Phone, merge_silences, pad_to

from ._convert import frames_to_s, phone_symbol, quiet_to_silence
from .decoder import SAMPLE_RATE, decode, phone_decoder, split_points, to_pcm16

MAX_CHUNK_S = 30.0


def recognise_phones(
    audio: np.ndarray, sr: int, cancel_check: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Phone]:
    """English-model phones recognised in ``audio`` (mono, any rate), covering the whole clip.

    Non-English speech comes out as the nearest English phones, which is what lip shapes need. Quiet
    stretches are SIL. Never raises on odd content: silence or noise gives all-SIL. ``cancel_check``
    and ``progress(fraction)`` are called between chunks.
    """
    pcm = to_pcm16(audio, sr)
    duration = pcm.size / SAMPLE_RATE
    if pcm.size < SAMPLE_RATE // 20:
        return pad_to([], duration)
    dec = phone_decoder()
    phones: list[Phone] = []
    pieces = split_points(pcm, MAX_CHUNK_S)
    for k, (a, b) in enumerate(pieces):
        if cancel_check is not None:
            cancel_check()
        if progress is not None:
            progress(k / len(pieces))
        off = a / SAMPLE_RATE
        decode(dec, pcm[a:b])
        for s in dec.seg():
            start = off + frames_to_s(int(s.start_frame))
            end = off + frames_to_s(int(s.end_frame) + 1)
            phones.append(Phone(phone_symbol(s.word), start, min(end, duration)))
    phones = [p for p in phones if p.end > p.start]
    return pad_to(quiet_to_silence(merge_silences(phones), pcm), duration)
