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
from dataclasses import replace
from pathlib import Path

from motion_server.engine.base import Cancelled, CancelToken, GenerateOptions
from motion_server.options import SAMPLE_RATE
from motion_server.pipeline import read_sidecar

from .generate import bundled_checkpoint

log = logging.getLogger("talkrig.animate")


def aligns_ahead(engine: str, model: str | None, server: str | None) -> bool:
    """Whether lines for this engine can be aligned ahead: the in-process diffusion engine with a
    checkpoint that reads phones at the aligner's rate. Anything unusual (no checkpoint, an unreadable
    config) says no, and the workers align, or report the problem, as they always did."""
    if engine != "diffusion" or server:
        return False
    from motion_server.model.config import read_config

    path = model or bundled_checkpoint()
    if path is None:
        return False
    try:
        cfg = read_config(path)
    except ValueError:
        return False
    return bool(cfg.get("phones")) and cfg.get("features", {}).get("sr") == SAMPLE_RATE


def align_ahead(audio: Path, options: GenerateOptions, sidecar: bool,
                cancel: CancelToken | None = None) -> GenerateOptions | None:
    """``options`` with the line's script aligned into ``phones`` (an empty list where it could not be
    aligned), or None when there is nothing to align ahead (no script), it was cancelled, or the input
    has a problem the worker will report in its usual words (unreadable audio or script)."""
    from motion_server.align import AlignError, align_transcript
    from motion_server.audio.io import load_audio
    from motion_server.transcribe.gate import ALIGNER_LANGUAGES

    if options.language is not None and options.language not in ALIGNER_LANGUAGES:
        return None  # the pipeline aligns nothing in this language
    text = (options.transcript or "").strip()
    try:
        if not text and sidecar:
            text = (read_sidecar(audio)[0] or "").strip()
        if not text:
            return None
        samples = load_audio(audio, sr=SAMPLE_RATE)
        phones = align_transcript(samples, SAMPLE_RATE, text, cancel.check if cancel is not None else None)
    except Cancelled:
        return None
    except AlignError as exc:
        log.warning("%s: transcript not aligned (%s); generating from the audio alone", audio.name, exc)
        phones = []
    except Exception:  # noqa: BLE001 - the worker meets it again and reports it per input
        return None
    return replace(options, phones=phones)


class AheadAligner:
    """A thread that aligns lines' scripts, the last line first (the workers reach it last), until
    ``stop()``: the command's process waits on the workers' start meanwhile (a pool's first submit
    blocks until the fork server has imported torch), so the thread has a core to itself."""

    def __init__(self, lines: list[tuple[int, Path, GenerateOptions]], sidecar: bool) -> None:
        self._lines = list(reversed(lines))
        self._sidecar = sidecar
        self._lock = threading.Lock()
        self._claimed: set[int] = set()
        self._done: dict[int, tuple[GenerateOptions, float]] = {}
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
            t0 = time.perf_counter()
            aligned = align_ahead(audio, options, self._sidecar, self._stop)
            if aligned is not None:
                with self._lock:
                    self._done[i] = (aligned, time.perf_counter() - t0)

    def take(self, i: int) -> tuple[GenerateOptions | None, float | None]:
        """(options with line ``i``'s phones, seconds spent) once aligned, else (None, None); either way
        the thread will not start on it any more (its worker aligns it)."""
        with self._lock:
            self._claimed.add(i)
            return self._done.get(i, (None, None))

    def finished(self) -> bool:
        """Every line is aligned or taken, or ``stop()`` was called and the last one is done."""
        return not self._thread.is_alive()

    def stop(self, wait: bool = True) -> None:
        """No more lines; a long take being aligned stops at its next piece (its worker aligns it).
        ``wait`` for the thread to end."""
        self._stop.cancel()
        if wait:
            self._thread.join()
