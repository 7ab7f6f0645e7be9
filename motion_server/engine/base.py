"""The one interface every engine implements (procedural performer, diffusion model, baselines)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from motion_server.options import check_options
from rig_mapping import FaceMotion

# progress(fraction in [0, 1], stage name)
ProgressFn = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised inside an engine when its CancelToken is set."""


class CancelToken:
    """Thread-safe cancel flag; engines call ``check()`` between units of work."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


@dataclass
class GenerateOptions:
    """Every inference control, with defaults. Engines ignore what they do not use.

    Types, defaults, ranges and meanings come from one table, motion_server.options (a test checks the
    fields below against it). None means "not chosen": ``steps``, ``sampler`` and ``guidance`` then take
    the checkpoint's own sampling settings, ``blink_rate`` the style's own rate (0 means no blinks).

    style: None (engine default / predicted), a preset name (e.g. "neutral", "happy"),
        "predicted", or a path to a reference clip (Live Link Face CSV, .npz FaceMotion).
    style_reference: a FaceMotion used as style reference (takes precedence over a path in ``style``).
    style_mix: optional (second style, t) pair interpolating style codes: (1-t)*style + t*second.
    transcribe: without a transcript, recognise one (motion_server.pipeline does it; engines ignore it).
    language: the language spoken (a Whisper code); None: checked on each take. Other than English, the
        pipeline neither recognises nor aligns: the audio alone drives the lips.
    phones: phones already aligned to the audio (set by the pipeline, or by `talkrig animate` ahead of its
        workers; never sent on the wire); engines that read phones use them instead of aligning
        ``transcript`` themselves. An empty list: ``transcript`` was tried and could not be aligned, so
        the audio alone drives the lips (as when the engine's own alignment fails).
    """

    style: str | None = None
    style_reference: FaceMotion | None = None
    style_mix: tuple[str, float] | None = None
    guidance: float | None = None  # None: the checkpoint's sampling.guidance
    intensity: float = 1.0
    head_motion: float = 1.0
    blink_rate: float | None = None  # blinks per minute; None keeps the style's own rate
    seed: int = 0
    steps: int | None = None  # None: the checkpoint's sampling.steps
    sampler: str | None = None  # None: the checkpoint's sampling.sampler
    fps: float = 30.0
    transcript: str | None = None
    transcribe: bool = True
    language: str | None = None
    phones: list | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("style_reference")
        d.pop("phones")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenerateOptions:
        known = {f.name for f in fields(cls)} - {"phones"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown generate option(s): {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def check(self) -> None:
        """ValueError when a value is outside the option table's limits (every engine calls this, so an
        in-process caller meets the same limits as the wire protocol and the command line)."""
        check_options(self.to_dict())


def check_audio(audio: np.ndarray, sr: int) -> np.ndarray:
    """The engine input contract: mono float32 samples and a positive rate. Returns a flat float32 view."""
    x = np.asarray(audio, np.float32).reshape(-1)
    if sr <= 0 or x.size == 0:
        raise ValueError("audio is empty or sample rate is not positive; pass mono float32 samples and sr")
    return x


@runtime_checkable
class Engine(Protocol):
    name: str

    def generate(
        self,
        audio: np.ndarray,
        sr: int,
        options: GenerateOptions,
        progress: ProgressFn | None = None,
        cancel: CancelToken | None = None,
    ) -> FaceMotion:
        """audio: mono float32 in [-1, 1] at ``sr`` Hz. Returns a FaceMotion at ``options.fps``."""
        ...

    def info(self) -> dict[str, Any]:
        """name, device, model id/version, style presets, supported options."""
        ...
