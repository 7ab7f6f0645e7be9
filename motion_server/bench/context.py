"""What every benchmark module receives from ``talkrig bench``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BenchContext:
    engines: list[str]
    durations: list[float]  # seconds of audio per configuration
    device: str = "auto"  # cpu | cuda | auto
    repeats: int = 3
    warmup: int = 1
    settings: list[dict[str, Any]] = field(default_factory=lambda: [{}])  # sampler/steps variants
    model: str | None = None
    sr: int = 16000
    progress: Any = None  # callable(str) for status lines, or None
    extra: dict[str, Any] = field(default_factory=dict)  # free-form options for plug-in benchmarks

    def say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        try:
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        except ImportError:
            return "cpu"
