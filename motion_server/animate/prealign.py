"""Aligning scripted lines ahead, in the command's own process, while its workers start.

A ``--jobs N`` (or ``--ray``) batch waits ~2 s for its workers to import torch and load the model, and the
command's own process sits idle meanwhile, one core of a small machine with it. Forced alignment of a
line's script (pocketsphinx, torch-free, ~0.12 s a short line here) is the part of a line's work that
needs nothing the workers load, so a thread here aligns lines in that time and the scheduler hands the
phones to the worker with the task (``GenerateOptions.phones``). The phones are the ones the engine would align
itself from the same 16 kHz samples, so the motion is identical; only where the work runs changes.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from motion_server.engine.base import Cancelled, CancelToken, GenerateOptions
from motion_server.options import SAMPLE_RATE
from motion_server.pipeline import read_sidecar

from .generate import bundled_checkpoint

log = logging.getLogger("talkrig.animate")

# Longer takes are left to their worker: pocketsphinx holds the GIL through a take's first pass, which
# would stall the scheduler (and Ctrl-C) for as long; a dialogue line is a few seconds.
AHEAD_MAX_S = 20.0


@dataclass(frozen=True)
class Aligned:
    """A line aligned ahead: the options its worker gets (the script as ``transcript``, its ``phones``)
    and the note saying where a script read from ``<stem>.txt`` came from."""

    options: GenerateOptions
    note: str | None
    seconds: float


def aligns_ahead(engine: str, model: str | None, server: str | None) -> bool:
    """Whether lines for this engine can be aligned ahead: the in-process diffusion engine with a
    checkpoint that reads phones at the aligner's rate. Anything unusual (no checkpoint, an unreadable
    config) says no, and the workers align, or report the problem, as they always did."""
    if engine != "diffusion" or server:
        return False
    from motion_server.model.config import read_config, reads_phones

    path = model or bundled_checkpoint()
    if path is None:
        return False
    try:
        cfg = read_config(path)
        return reads_phones(cfg) and cfg["features"]["sr"] == SAMPLE_RATE
    except Exception:  # noqa: BLE001 - an odd config: the workers load it and report what is wrong
        return False


def align_ahead(audio: Path, options: GenerateOptions, sidecar: bool,
                cancel: CancelToken | None = None) -> Aligned | None:
    """The line's script aligned: ``options`` with it as ``transcript`` and its ``phones`` (an empty list
    where it could not be aligned), so the worker uses exactly the text that was aligned. None when there
    is nothing to align ahead (no script, a language without an aligner, a take over ``AHEAD_MAX_S``), it
    was cancelled, or the input has a problem the worker will report in its usual words."""
    from motion_server.align import AlignError, align_transcript
    from motion_server.audio.io import load_audio
    from motion_server.transcribe.gate import without_aligner

    if without_aligner(options.language):
        return None  # the pipeline aligns nothing in this language
    t0 = time.perf_counter()
    text, note = (options.transcript or "").strip(), None
    try:
        if not text and sidecar:
            read, note = read_sidecar(audio)
            text = (read or "").strip()
        if not text:
            return None
        samples = load_audio(audio, sr=SAMPLE_RATE)
        if samples.size > AHEAD_MAX_S * SAMPLE_RATE or not np.isfinite(samples).all():
            return None  # a long take, or audio the engine refuses: the worker's business
        phones = align_transcript(samples, SAMPLE_RATE, text, cancel.check if cancel is not None else None)
    except Cancelled:
        return None
    except AlignError as exc:
        log.warning("%s: transcript not aligned (%s); generating from the audio alone", audio.name, exc)
        phones = []
    except Exception:  # noqa: BLE001 - the worker meets it again and reports it per input
        return None
    return Aligned(replace(options, transcript=text, phones=phones), note, time.perf_counter() - t0)


class AheadAligner:
    """A thread that aligns lines' scripts, the last line first (the workers reach it last), until
    ``stop()``: the command's process waits on the workers' start meanwhile (a pool's first submit
    blocks until the fork server has imported torch), so the thread has a core to itself."""

    def __init__(self, lines: list[tuple[int, Path, GenerateOptions]], sidecar: bool) -> None:
        self._lines = list(reversed(lines))
        self._sidecar = sidecar
        self._lock = threading.Lock()
        self._claimed: set[int] = set()
        self._done: dict[int, Aligned] = {}
        self._stop = CancelToken()
        self._thread = threading.Thread(target=self._run, name="talkrig-align-ahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for i, audio, options in self._lines:
            with self._lock:
                if self._stop.cancelled:
                    return
                if i in self._claimed:
                    continue
                self._claimed.add(i)
            aligned = align_ahead(audio, options, self._sidecar, self._stop)
            if aligned is not None:
                with self._lock:
                    self._done[i] = aligned

    def take(self, i: int) -> Aligned | None:
        """Line ``i`` aligned, or None; either way the thread will not start on it any more (its worker
        aligns it)."""
        with self._lock:
            self._claimed.add(i)
            return self._done.get(i)

    def finished(self) -> bool:
        """Every line is aligned or taken, or ``stop()`` was called and the last one is done."""
        return not self._thread.is_alive()

    def stop(self, wait: bool = True) -> None:
        """No more lines; a long take being aligned stops at its next piece (its worker aligns it).
        ``wait`` for the thread to end."""
        self._stop.cancel()
        if wait:
            self._thread.join()
