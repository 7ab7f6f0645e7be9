"""The torch side of `talkrig animate`: pick an engine (in-process or a motion server) and turn one audio
file into a FaceMotion that lasts exactly as long as the audio."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from motion_server.audio.io import audio_sha256, load_audio
from motion_server.engine.base import CancelToken, GenerateOptions, ProgressFn
from rig_mapping import FaceMotion

SAMPLE_RATE = 16000


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


def make_generator(engine: str, model: str | None = None, server: str | None = None) -> Generator:
    """An in-process engine from the registry, or a client of the motion server at ``server``."""
    if server:
        from motion_server.client import MotionClient

        client = MotionClient(server, timeout_s=60.0)

        def via_server(path, audio, options, progress, cancel):
            # the options object, not its dict: a style reference clip travels with it as data
            return client.generate(path, options, progress=progress, cancel_event=_Event(cancel))

        return Generator(f"server {server}", via_server, client.close)

    from motion_server.engine.registry import create_engine

    kwargs: dict[str, Any] = {}
    if model:
        if engine != "diffusion":
            raise ValueError(f"--model is a diffusion checkpoint; it does not apply to --engine {engine}")
        kwargs["model"] = model
    eng = create_engine(engine, **kwargs)

    def in_process(path, audio, options, progress, cancel):
        return eng.generate(audio, SAMPLE_RATE, options, progress, cancel)

    return Generator(engine, in_process)


def load_style_reference(options: GenerateOptions) -> GenerateOptions:
    """A ``style`` naming an existing motion file (.csv Live Link Face, .npz, .json) becomes
    ``style_reference`` data, so it also works through a server that cannot see this machine's files."""
    from rig_mapping.formats import FORMATS, load_motion

    style = options.style
    if style and _names_a_file(style):
        p = Path(style)
        if p.is_dir():
            raise ValueError(f"{p} is a folder; give a motion file ({', '.join(FORMATS)}) or a preset name")
        if not p.is_file():
            raise ValueError(f"style reference file not found: {p}")
        if p.suffix.lower() not in FORMATS:
            raise ValueError(f"{p}: a style reference is a motion file ({', '.join(FORMATS)})")
        options.style_reference = load_motion(style)
        options.style = None
    return options


def _names_a_file(style: str) -> bool:
    """A style that is a path rather than a preset ('happy:3', 'predicted'): a motion suffix, a path
    separator, or an existing file (a bare folder name could be a preset and is left to the engine)."""
    from rig_mapping.formats import FORMATS

    p = Path(style)
    return p.suffix.lower() in FORMATS or "/" in style or "\\" in style or p.is_file()


class _Event:
    """CancelToken seen through the ``is_set()`` interface the client polls."""

    def __init__(self, token: CancelToken | None) -> None:
        self._token = token

    def is_set(self) -> bool:
        return self._token is not None and self._token.cancelled


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


def sidecar_transcript(path: Path) -> Path | None:
    """``<stem>.txt`` next to an audio file: its transcript, by the same convention as ``talkrig eval``."""
    txt = Path(path).with_suffix(".txt")
    return txt if txt.is_file() else None


def animate_file(gen: Generator, path: Path, options: GenerateOptions, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None,
                 sidecar: bool = True) -> tuple[FaceMotion, float, list[str]]:
    """audio file -> (motion of round(duration * fps) frames, duration in seconds, notes).

    Without a transcript in ``options``, a ``<stem>.txt`` beside the audio is used as one (``sidecar``):
    engines that read phones align it for exact lip closures."""
    audio = load_audio(path, sr=SAMPLE_RATE)
    duration = audio.size / SAMPLE_RATE
    notes: list[str] = []
    txt = sidecar_transcript(path) if sidecar and not (options.transcript or "").strip() else None
    if txt is not None:
        try:
            text = txt.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the transcript {txt} ({exc}); fix or remove it, or pass "
                             "--no-transcript-files") from None
        if text:
            options = replace(options, transcript=text)
            notes.append(f"transcript from {txt.name}")
    motion = gen(path, audio, options, progress, cancel)
    if abs(motion.fps - options.fps) > 1e-6:
        motion = motion.resample(options.fps)
    n = max(1, round(duration * options.fps))
    motion, note = fit_length(motion, n)
    meta = dict(motion.meta)
    meta.setdefault("engine", gen.label)
    meta.update(audio_file=path.name, audio_sha256=audio_sha256(path), duration=duration)
    return motion.replace(meta=meta), duration, notes + ([note] if note else [])
