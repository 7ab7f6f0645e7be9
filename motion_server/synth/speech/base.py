"""Common pieces of the speech backends: prosody parameters, the synthesis result, errors, post-processing.

A backend turns ``(text, voice, prosody)`` into ``Speech(audio float32 mono, sr, phones)`` where every
phone is ARPAbet (see :mod:`motion_server.phones`) and the phones tile ``[0, len(audio) / sr]``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from motion_server.phones import Phone, pad_to, validate_phones

from .registry_data import backend_entry
from .voice_quality import apply_voice_quality


class SpeechError(RuntimeError):
    """Synthesis failed (missing program, unknown voice, backend error)."""


# usable range of each Prosody field; the defaults (1.0 multipliers, 0.0 amounts) leave the voice as it is
_RANGES = {"rate": (0.2, 5.0), "pitch": (0.2, 5.0), "pitch_range": (0.2, 5.0), "energy": (0.2, 5.0),
           "effort": (0.25, 4.0), "tremor": (0.0, 1.0), "breath": (0.0, 1.0)}


@dataclass(frozen=True)
class Prosody:
    """How to speak. Multipliers of a voice's defaults: ``rate`` > 1 speaks faster, ``pitch`` scales mean
    F0, ``pitch_range`` scales F0 excursion, ``energy`` scales loudness (linear amplitude). Voice quality,
    applied after synthesis (see :mod:`.voice_quality`): ``effort`` (multiplier; tilts the spectrum),
    ``tremor`` and ``breath`` (amounts 0..1)."""

    rate: float = 1.0
    pitch: float = 1.0
    pitch_range: float = 1.0
    energy: float = 1.0
    effort: float = 1.0
    tremor: float = 0.0
    breath: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            lo, hi = _RANGES[f.name]
            if not (np.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"prosody {f.name}={v!r} is outside the usable range {lo}..{hi} "
                                 f"({f.default} = voice default)")

    @staticmethod
    def ranges() -> dict[str, tuple[float, float]]:
        """Usable (low, high) of every field."""
        return dict(_RANGES)

    @classmethod
    def from_dict(cls, d: dict[str, float] | None) -> Prosody:
        """Accepts an emotion preset's prosody dict; keys that are not fields are ignored."""
        d = d or {}
        return cls(**{f.name: float(d[f.name]) for f in fields(cls) if f.name in d})

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # float32 mono in [-1, 1]
    sr: int
    phones: list[Phone]
    voice: str
    text: str

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sr

    def __iter__(self):  # allows ``audio, sr, phones = backend.synthesize(...)``
        return iter((self.audio, self.sr, self.phones))


@dataclass(frozen=True)
class VoiceInfo:
    id: str  # "backend:name"
    backend: str
    name: str
    language: str  # BCP-47-ish, e.g. "en-us", "de"
    gender: str = "unknown"
    # which prosody fields the synthesizer itself honours; the rest are applied afterwards where possible
    native_prosody: tuple[str, ...] = ("rate", "pitch", "pitch_range", "energy")


class Backend(Protocol):
    name: str

    def available(self) -> bool: ...

    def voices(self) -> list[VoiceInfo]: ...

    def synthesize(self, text: str, voice: str, prosody: Prosody | None = None) -> Speech: ...


class ProgramBackend:
    """A backend run as an external program (Festival, Flite) whose voices are listed in ``voices.json``.

    Subclasses set ``name`` (the voices.json key), ``program``, ``label`` (for messages) and implement
    :meth:`installed_voices` (what the installed program reports; voices are separate apt packages)."""

    name: str
    program: str
    label: str

    def __init__(self) -> None:
        self._entry = backend_entry(self.name)

    def installed_voices(self) -> frozenset[str]:
        raise NotImplementedError

    def available(self) -> bool:
        try:
            require_program(self.program, self._entry["apt"])
        except SpeechError:
            return False
        return bool(self.installed_voices())

    def installed(self, voice: str) -> bool:
        return voice in self.installed_voices()

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(f"{self.name}:{v['name']}", self.name, v["name"], v["language"], v["gender"],
                          tuple(v["native_prosody"])) for v in self._entry["voices"]]

    def _voice(self, voice: str) -> dict:
        for v in self._entry["voices"]:
            if v["name"] == voice:
                return v
        names = ", ".join(v["name"] for v in self._entry["voices"])
        raise SpeechError(f"unknown {self.label} voice {voice!r}; known: {names}")


def require_program(program: str, apt_package: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise SpeechError(f"'{program}' is not installed; install it with: sudo apt-get install {apt_package}")
    return path


def run_program(cmd: list[str], input_text: str | None = None, timeout: float = 120.0) -> str:
    try:
        proc = subprocess.run(cmd, input=input_text, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SpeechError(f"{cmd[0]} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise SpeechError(f"{cmd[0]} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


def clean_text(text: str) -> str:
    text = " ".join(str(text).split())
    if not text:
        raise SpeechError("cannot synthesize empty text")
    return text


def finish(audio: np.ndarray, sr: int, phones: list[Phone], voice: str, text: str, prosody: Prosody,
           native: tuple[str, ...]) -> Speech:
    """Apply prosody the synthesizer could not (pitch by a duration-preserving shift, voice quality, energy
    by gain), make phones tile the audio exactly and validate."""
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if audio.size == 0:
        raise SpeechError(f"{voice} produced no audio for {text!r}")
    if "pitch" not in native and abs(prosody.pitch - 1.0) > 1e-3:
        import librosa  # heavy import, only when needed

        steps = 12.0 * np.log2(prosody.pitch)
        audio = librosa.effects.pitch_shift(audio, sr=sr, n_steps=float(steps)).astype(np.float32)
    audio = apply_voice_quality(audio, sr, prosody.effort, prosody.tremor, prosody.breath)
    if "energy" not in native and abs(prosody.energy - 1.0) > 1e-6:
        audio = audio * np.float32(prosody.energy)
    peak = float(np.max(np.abs(audio)))
    if peak > 0.99:  # keep within [-1, 1] without changing relative loudness across phones
        audio = audio * np.float32(0.99 / peak)
    phones = pad_to(phones, len(audio) / sr)
    validate_phones(phones)
    return Speech(audio.astype(np.float32), int(sr), phones, voice, text)
