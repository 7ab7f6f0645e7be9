"""Forced alignment of a recognised transcript in pieces cut at the pauses the recogniser heard, started
while the recogniser is still decoding.

The recogniser already knows roughly when each word was said, so the aligner need not search the whole
take for them: each piece (a few seconds of words between two pauses) is aligned on its own, which skips
the whole-take word pass long clips otherwise need, and runs on a second thread while the recogniser
decodes the next 30 s window (CTranslate2 releases the GIL; pocketsphinx holds it, so pieces are aligned
one at a time). A piece that cannot be aligned becomes unknown phones: the audio alone drives it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from motion_server.phones import SIL, Phone, merge_silences

from .recogniser import Word

log = logging.getLogger(__name__)

MIN_PIECE_S = 6.0  # shorter pieces cost more in per-utterance set-up than they save
MIN_PAUSE_S = 0.2  # a cut goes in the middle of a gap between words at least this long
UNKNOWN = "UNK"


class ChunkedAligner:
    """Feed it the recogniser's words as they come (:meth:`feed`), then :meth:`finish` for the phones."""

    def __init__(self, audio: np.ndarray, sr: int, cancel_check: Callable[[], None] | None = None) -> None:
        self.audio = np.asarray(audio, np.float32).reshape(-1)
        self.sr = int(sr)
        self.duration = self.audio.size / self.sr
        self.check = cancel_check
        self._pending: list[Word] = []
        self._cut = 0.0  # where the next piece starts (seconds)
        self._pieces: list[tuple[float, float, Future]] = []
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="talkrig-align")

    def _submit(self, start: float, end: float, words: Sequence[Word]) -> None:
        text = " ".join(w.text for w in words)
        self._pieces.append((start, end, self._pool.submit(self._align, start, end, text)))

    def _align(self, start: float, end: float, text: str) -> list[Phone]:
        from motion_server.align import AlignError, align_transcript

        if self.check is not None:
            self.check()
        a, b = int(round(start * self.sr)), int(round(end * self.sr))
        try:
            phones = align_transcript(self.audio[a:b], self.sr, text, self.check)
        except AlignError as exc:
            log.info("piece %.2f-%.2f s not aligned (%s); the audio alone drives it", start, end, exc)
            return [Phone(UNKNOWN, start, end)]
        return [Phone(p.symbol, p.start + start, p.end + start, p.stress, p.word) for p in phones]

    def feed(self, words: Sequence[Word]) -> None:
        """New words (in time order). Pieces that end in a pause before the newest word are started."""
        self._pending.extend(w for w in words if w.end > w.start or w.text)
        ws = self._pending
        last_cut_index = 0
        for i in range(len(ws) - 1):
            gap_a, gap_b = ws[i].end, ws[i + 1].start
            if gap_b - gap_a >= MIN_PAUSE_S and gap_a - self._cut >= MIN_PIECE_S:
                cut = 0.5 * (gap_a + gap_b)
                self._submit(self._cut, cut, ws[last_cut_index:i + 1])
                self._cut, last_cut_index = cut, i + 1
        self._pending = ws[last_cut_index:]

    def finish(self) -> list[Phone]:
        """All phones of the take, from 0 to its end (silence where no word was heard)."""
        try:
            if self._pending:
                self._submit(self._cut, self.duration, self._pending)
            elif self._cut < self.duration:
                self._pieces.append((self._cut, self.duration, _done([Phone(SIL, self._cut, self.duration)])))
            self._pending = []
            phones: list[Phone] = []
            for _, _, fut in self._pieces:
                phones.extend(fut.result())
            return merge_silences(phones) if phones else [Phone(SIL, 0.0, self.duration)]
        finally:
            self.close()

    def close(self) -> None:
        for _, _, fut in self._pieces:
            fut.cancel()
        self._pool.shutdown(wait=True)


def _done(value: list[Phone]) -> Future:
    f: Future = Future()
    f.set_result(value)
    return f
