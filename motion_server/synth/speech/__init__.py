"""Speech synthesis with phone timings: Festival, Flite and eSpeak NG behind one small interface.

>>> from motion_server.synth.speech import synthesize, list_voices
>>> speech = synthesize("Hello there.", "espeak:en-us")        # doctest: +SKIP
>>> speech.audio, speech.sr, speech.phones                       # doctest: +SKIP

Voice ids are ``"backend:name"`` (see ``voices.json``). ``list_voices()`` lists the voices whose program
is installed; a missing program raises :class:`SpeechError` naming the apt package.
"""

from __future__ import annotations

from .base import Backend, Prosody, Speech, SpeechError, VoiceInfo
from .espeak import EspeakBackend
from .festival import FestivalBackend
from .flite import FliteBackend

__all__ = ["Backend", "Prosody", "Speech", "SpeechError", "VoiceInfo", "get_backend", "list_voices",
           "synthesize", "voice_info", "BACKENDS"]

BACKENDS: dict[str, type] = {"festival": FestivalBackend, "flite": FliteBackend, "espeak": EspeakBackend}
_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise SpeechError(f"unknown speech backend {name!r}; choose one of {', '.join(sorted(BACKENDS))}")
    if name not in _instances:
        _instances[name] = BACKENDS[name]()
    return _instances[name]


def list_voices(installed_only: bool = True, language: str | None = None) -> list[VoiceInfo]:
    """All known voices (sorted by id); ``language`` filters by prefix, e.g. "en" or "de"."""
    out: list[VoiceInfo] = []
    for name in sorted(BACKENDS):
        backend = get_backend(name)
        if installed_only and not backend.available():
            continue
        installed = getattr(backend, "installed", None)
        out.extend(v for v in backend.voices()
                   if (language is None or v.language.startswith(language))
                   and (not installed_only or installed is None or installed(v.name)))
    return sorted(out, key=lambda v: v.id)


def _split(voice_id: str) -> tuple[str, str]:
    backend, sep, name = voice_id.partition(":")
    if not sep or not name:
        raise SpeechError(f"voice id {voice_id!r} must look like 'backend:name', e.g. 'espeak:en-us'")
    return backend, name


def voice_info(voice_id: str) -> VoiceInfo:
    backend, name = _split(voice_id)
    for v in get_backend(backend).voices():
        if v.name == name:
            return v
    raise SpeechError(f"unknown voice {voice_id!r}; see talkrig synth --list-voices")


def synthesize(text: str, voice_id: str, prosody: Prosody | dict | None = None) -> Speech:
    """Speak ``text`` with ``voice_id``; returns audio (float32 mono), sample rate and ARPAbet phones."""
    backend, name = _split(voice_id)
    if isinstance(prosody, dict):
        prosody = Prosody.from_dict(prosody)
    return get_backend(backend).synthesize(text, name, prosody)
