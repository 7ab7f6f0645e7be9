"""The torch side of `talkrig animate`: pick an engine (in-process or a motion server) and turn one audio
file into a FaceMotion that lasts exactly as long as the audio."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from motion_server.audio.io import audio_sha256, load_audio
from motion_server.engine.base import CancelToken, GenerateOptions, ProgressFn
from motion_server.options import SAMPLE_RATE
from motion_server.pipeline import (
    MotionPipeline,
    default_recogniser,
    finish_file_motion,
    fit_length,
    sidecar_transcript,
    with_sidecar,
)
from rig_mapping import FaceMotion

__all__ = ["Generator", "animate_file", "fit_length", "make_generator", "make_pipeline", "sidecar_transcript"]


def bundled_checkpoint() -> Path | None:
    """The diffusion checkpoint shipped in the package, if one has been trained and committed."""
    from motion_server.model import DEFAULT_CHECKPOINT

    d = Path(DEFAULT_CHECKPOINT)
    if (d / "config.json").is_file() and any(d.glob("*.safetensors")):
        return d
    return None


def resolve_engine_name(requested: str | None, model: str | None) -> tuple[str, str | None]:
    """(engine name, notice or None). No --engine: the diffusion model when a checkpoint is at hand
    (--model or the bundled one), else the procedural performer, said in one line."""
    if requested:
        return requested, None
    if model or bundled_checkpoint() is not None:
        return "diffusion", None
    return "procedural", (
        "note: no trained diffusion checkpoint is bundled yet, so the procedural performer animates "
        "(--engine procedural); pass --model CHECKPOINT to use a diffusion model"
    )


@dataclass
class Generator:
    """Calls one engine for many files; ``label`` names it in the summary and in the motion's meta."""

    label: str
    _fn: Callable[[Path, np.ndarray, GenerateOptions, ProgressFn | None, CancelToken | None], FaceMotion]
    _close: Callable[[], None] | None = None

    def __call__(self, path: Path, audio: np.ndarray, options: GenerateOptions,
                 progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> FaceMotion:
        return self._fn(path, audio, options, progress, cancel)

    def close(self) -> None:
        if self._close is not None:
            self._close()


def make_generator(engine: str, model: str | None = None, server: str | None = None,
                   asr_model: str | None = None) -> Generator:
    """The in-process pipeline (engine + recogniser), or a client of the motion server at ``server``
    (whose own pipeline recognises speech)."""
    if server:
        from motion_server.client import MotionClient

        client = MotionClient(server, timeout_s=60.0)

        def via_server(path, audio, options, progress, cancel):
            # the options object, not its dict: a style reference clip travels with it as data
            return client.generate(path, options, progress=progress, cancel_event=_Event(cancel))

        return Generator(f"server {server}", via_server, client.close)

    pipe = make_pipeline(engine, model=model, asr_model=asr_model)

    def in_process(path, audio, options, progress, cancel):
        return pipe.generate(audio, SAMPLE_RATE, options, progress, cancel)

    return Generator(engine, in_process, pipe.close)


def make_pipeline(engine: str, model: str | None = None, device: str | None = None,
                  asr_model: str | None = None, transcribe: bool = True) -> MotionPipeline:
    """An engine from the registry in a pipeline with the default recogniser (when ``transcribe``)."""
    from motion_server.engine.registry import create_engine

    kwargs: dict[str, Any] = {}
    if model:
        if engine != "diffusion":
            raise ValueError(f"--model is a diffusion checkpoint; it does not apply to --engine {engine}")
        kwargs["model"] = model
    if device and engine == "diffusion":
        kwargs["device"] = device
    eng = create_engine(engine, **kwargs)
    return MotionPipeline(eng, default_recogniser(asr_model) if transcribe else None)


def load_style_reference(options: GenerateOptions) -> GenerateOptions:
    """A ``style`` naming an existing motion file (.csv Live Link Face, .npz, .json) becomes
    ``style_reference`` data, so it also works through a server that cannot see this machine's files."""
    from rig_mapping.formats import style_reference

    clip = style_reference(options.style)
    if clip is not None:
        options.style_reference = clip
        options.style = None
    return options


class _Event:
    """CancelToken seen through the ``is_set()`` interface the client polls."""

    def __init__(self, token: CancelToken | None) -> None:
        self._token = token

    def is_set(self) -> bool:
        return self._token is not None and self._token.cancelled


def animate_file(gen: Generator, path: Path, options: GenerateOptions, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None,
                 sidecar: bool = True) -> tuple[FaceMotion, float, list[str]]:
    """audio file -> (motion of round(duration * fps) frames, duration in seconds, notes).

    Without a transcript in ``options``, a ``<stem>.txt`` beside the audio is used as one (``sidecar``);
    without either, the pipeline (here or in the server) recognises one."""
    audio = load_audio(path, sr=SAMPLE_RATE)
    options, notes = with_sidecar(path, options) if sidecar else (options, [])
    motion = gen(path, audio, options, progress, cancel)
    return finish_file_motion(motion, path, audio.size / SAMPLE_RATE, options.fps, notes, audio_sha256(path),
                              gen.label)
