"""What every benchmark module receives from ``talkrig bench``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from motion_server.options import SAMPLE_RATE


@dataclass
class BenchContext:
    engines: list[str]
    durations: list[float]  # seconds of audio per configuration
    device: str = "auto"  # cpu | cuda | auto
    repeats: int = 3
    warmup: int = 1
    settings: list[dict[str, Any]] = field(default_factory=lambda: [{}])  # sampler/steps variants
    model: str | None = None
    sr: int = SAMPLE_RATE
    progress: Any = None  # callable(str) for status lines, or None
    extra: dict[str, Any] = field(default_factory=dict)  # free-form options for plug-in benchmarks

    def say(self, msg: str) -> None:
        if self.progress:
            self.progress(msg)

    def resolved_device(self) -> str:
        """Where the engines run: the same rule as training and the diffusion engine."""
        from motion_server.model.device import resolve_device

        return str(resolve_device(self.device))
