"""Helpers for the motion server tests: real server processes on free loopback ports, test audio, and a
paced engine (the real EnergyEngine, spread over time) so jobs last long enough to cancel or kill."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from motion_server.client_process import connect_address, start_local_server
from motion_server.engine.base import CancelToken, GenerateOptions, ProgressFn
from rig_mapping import FaceMotion

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
PACED = "motion_server_helpers:PacedEngine"
# 0.6 s a step: long jobs within the protocol's step limit (50 steps = 30 s), for tests that need a job
# to outlive a heartbeat timeout, a restart or a flood of uploads
SLOW_PACED = "motion_server_helpers:SlowPacedEngine"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def speech_like_wav(seconds: float, seed: int = 0, sr: int = 16000) -> bytes:
    """Noise bursts shaped like syllables (3-6 Hz envelope): loudness varies the way speech does."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    env = np.clip(np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 6)), 0, None) ** 2
    x = (0.5 * env * rng.standard_normal(n) * 0.5).astype(np.float32)
    b = io.BytesIO()
    sf.write(b, x, sr, format="WAV", subtype="PCM_16")
    return b.getvalue()


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(REPO), env.get("PYTHONPATH", "")])
    return env


class ServerProcess:
    """A real `python -m motion_server serve` on a free port, stopped (and reaped) on close()."""

    def __init__(self, tmp: Path, engine: str = "energy", extra: list[str] | None = None,
                 bind: str | None = None, wait_s: float = 60.0, server_public_key: bytes | None = None) -> None:
        self.bind = bind or f"tcp://127.0.0.1:{free_port()}"
        self.address = connect_address(self.bind)
        self.server_public_key = server_public_key
        self.engine = engine
        self.extra = list(extra or [])
        self.log_path = Path(tmp) / f"server-{abs(hash(self.bind))}.log"
        self.proc: subprocess.Popen | None = None
        self.start(wait_s)

    def start(self, wait_s: float = 60.0) -> None:
        self.proc = start_local_server(sys.executable, bind=self.bind, engine=self.engine, extra_args=self.extra,
                                       wait_s=wait_s, log_path=self.log_path, env=server_env(),
                                       server_public_key=self.server_public_key)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the server dies without any chance to answer."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def close(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class PacedEngine:
    """The real EnergyEngine, with its work spread over ``steps`` ticks of ``tick_s`` seconds (progress
    and cancel checks each tick), so a job runs long enough to be cancelled or orphaned in a test."""

    name = "paced-energy"
    tick_s = 0.1

    def __init__(self, **_: Any) -> None:
        from motion_server.engine.energy import EnergyEngine

        self.inner = EnergyEngine()

    def generate(self, audio: np.ndarray, sr: int, options: GenerateOptions, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None) -> FaceMotion:
        if options.transcript == "__fail__":  # lets a test make the engine crash mid-job
            raise RuntimeError("engine crashed on purpose")
        steps = options.steps or 8  # unset: what the bundled checkpoint's sampling settings say
        for i in range(steps):
            if cancel:
                cancel.check()
            if progress:
                progress(i / steps, "pacing")
            time.sleep(self.tick_s)  # the engine's work, spread over time: what a test cancels or outlives
        return self.inner.generate(audio, sr, options, progress, cancel)

    def info(self) -> dict[str, Any]:
        return {**self.inner.info(), "name": self.name}


class SlowPacedEngine(PacedEngine):
    """PacedEngine at 0.6 s a step (see SLOW_PACED)."""

    tick_s = 0.6
