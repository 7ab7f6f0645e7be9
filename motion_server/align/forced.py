"""Forced alignment of a known transcript: words -> phones with times (two PocketSphinx passes)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from motion_server.phones import SIL, Phone, merge_silences, pad_to, vowel_symbols

from ._convert import frames_to_s, phone_symbol, word_label
from .decoder import FRAME_RATE, SAMPLE_RATE, AlignError, align_decoder, decode, to_pcm16
from .text import guess_pronunciation, normalise_transcript

if TYPE_CHECKING:
    from pocketsphinx import Decoder

log = logging.getLogger(__name__)

# Phone-level alignment of one utterance costs time and memory in (frames x states); longer audio is
# aligned in pieces cut at silences the word-level pass found.
MAX_CHUNK_S = 40.0
_VOWELS = vowel_symbols()


def _prepare_words(dec: Decoder, text: str) -> list[str]:
    words = normalise_transcript(text)
    if not words:
        raise AlignError("the transcript has no words to align (give the spoken text, e.g. --transcript 'hello')")
    kept, guessed, skipped = [], [], []
    for w in words:
        if dec.lookup_word(w) is not None:
            kept.append(w)
            continue
        pron = guess_pronunciation(w)
        if pron is None:
            skipped.append(w)
            continue
        dec.add_word(w, pron, True)
        guessed.append(w)
        kept.append(w)
    if guessed:
        log.warning("not in the pronunciation dictionary, spelled by letter rules: %s", ", ".join(guessed))
    if skipped:
        log.warning("skipped words with no letters: %s", ", ".join(skipped))
    if not kept:
        raise AlignError("none of the transcript's words can be pronounced; check the transcript")
    return kept


def _word_pass(dec: Decoder, pcm: np.ndarray, words: list[str]) -> list[tuple[str, int, int]]:
    dec.set_align_text(" ".join(words))
    decode(dec, pcm)
    segs = [(s.word, int(s.start_frame), int(s.end_frame)) for s in (dec.seg() or ())]
    if not any(word_label(w) for w, _, _ in segs):
        raise AlignError(
            "could not align the transcript to the audio: check that the transcript matches what is said "
            "(or leave it out to recognise phones from the audio)"
        )
    return segs


def _phone_pass(dec: Decoder, pcm: np.ndarray, words: list[str], offset_s: float) -> list[Phone]:
    segs = _word_pass(dec, pcm, words)
    try:
        dec.set_alignment()
        decode(dec, pcm)
        al = dec.get_alignment()
    except RuntimeError:
        al = None
    if al is None:
        # the state-level pass can fail where the word pass succeeded: spread each word's dictionary
        # phones over its aligned time instead of giving up
        log.info("phone-level pass failed; dividing aligned words into their dictionary phones")
        return _split_words(dec, segs, offset_s)
    out: list[Phone] = []
    for w in al:
        label = word_label(w.name)
        for p in w:
            sym = phone_symbol(p.name) if label else SIL
            a = offset_s + frames_to_s(p.start)
            out.append(Phone(sym, a, a + frames_to_s(p.duration), None, label if sym != SIL else None))
    return out


def _split_words(dec: Decoder, segs: list[tuple[str, int, int]], offset_s: float) -> list[Phone]:
    out: list[Phone] = []
    for word, a, b in segs:
        t0, t1 = offset_s + frames_to_s(a), offset_s + frames_to_s(b + 1)
        label = word_label(word)
        pron = dec.lookup_word(word) if label else None
        syms = [phone_symbol(p) for p in pron.split()] if pron else []
        if not syms:
            out.append(Phone(SIL, t0, t1))
            continue
        # vowels last longer than consonants
        weights = np.array([1.6 if s in _VOWELS else 1.0 for s in syms])
        edges = t0 + (t1 - t0) * np.concatenate([[0.0], np.cumsum(weights) / weights.sum()])
        out.extend(Phone(s, float(edges[k]), float(edges[k + 1]), None, label) for k, s in enumerate(syms))
    return out


def _chunks(segs: list[tuple[str, int, int]], n_frames: int, max_frames: int) -> list[tuple[int, int, list[str]]]:
    """(start frame, end frame, words) pieces of at most ~max_frames, each cut in the middle of a pause."""
    pieces: list[tuple[int, int, list[str]]] = []
    start, words, last_cut = 0, [], None
    for word, a, b in segs:
        label = word_label(word)
        if label is None and b - a >= 5:
            last_cut = ((a + b) // 2, len(words))
        if label is not None:
            words.append(label)
        if b - start > max_frames and last_cut is not None and last_cut[1] > 0:
            cut, k = last_cut
            pieces.append((start, cut, words[:k]))
            start, words, last_cut = cut, words[k:], None
    pieces.append((start, n_frames, words))
    return [p for p in pieces if p[2] or p[1] > p[0]]


def align_transcript(
    audio: np.ndarray, sr: int, text: str, cancel_check: Callable[[], None] | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Phone]:
    """Phones (ARPAbet, seconds, with their words) for ``text`` spoken in ``audio`` (mono, any rate).

    Words missing from the CMU dictionary get a letter-rule pronunciation (logged). Raises
    :class:`AlignError` when the transcript cannot be matched to the audio. ``cancel_check`` is called
    between pieces of work (it raises to stop); ``progress(fraction)`` reports the pieces done.
    """
    pcm = to_pcm16(audio, sr)
    duration = pcm.size / SAMPLE_RATE
    if duration < 0.1:
        raise AlignError(f"audio is too short to align ({duration:.2f} s)")
    try:
        return _align(align_decoder(), pcm, text, cancel_check, progress)
    except AlignError:
        log.info("alignment lost its path with default beams; retrying with wide beams")
        return _align(align_decoder(wide=True), pcm, text, cancel_check, progress)


def _align(dec: Decoder, pcm: np.ndarray, text: str, cancel_check: Callable[[], None] | None,
           progress: Callable[[float], None] | None) -> list[Phone]:
    duration = pcm.size / SAMPLE_RATE
    words = _prepare_words(dec, text)
    hop = SAMPLE_RATE // FRAME_RATE
    n_frames = pcm.size // hop
    if duration <= MAX_CHUNK_S:
        plan = [(0, n_frames, words)]
    else:
        plan = _chunks(_word_pass(dec, pcm, words), n_frames, int(MAX_CHUNK_S * FRAME_RATE))
    phones: list[Phone] = []
    for k, (a, b, chunk_words) in enumerate(plan):
        if cancel_check is not None:
            cancel_check()
        if progress is not None:
            progress(k / len(plan))
        seg = pcm[a * hop : b * hop]
        if not chunk_words:
            phones.append(Phone(SIL, a / FRAME_RATE, b / FRAME_RATE))
            continue
        phones.extend(_phone_pass(dec, seg, chunk_words, a / FRAME_RATE))
    return pad_to(merge_silences(phones), duration)
