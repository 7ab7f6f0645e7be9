"""eSpeak NG backend through its C library (``libespeak-ng.so.1``, via ctypes).

Timing: sample-exact. The library is initialised in synchronous mode with phoneme events; the synth
callback receives the audio chunks and, for every phoneme, an ``espeakEVENT_PHONEME`` whose ``sample``
field is the output-sample index where that phoneme starts (its mnemonic is packed in ``id.string``).
A phone lasts until the next phoneme event; the last one until the end of the audio. ``WORD`` events give
the text span of each word, which labels the phones. eSpeak reports no lexical stress in these events.

Prosody: all native. Rate in words per minute (175 * rate), pitch as eSpeak's 0-100 base pitch
(measured: about 68 units per octave around the default 50), range 0-100 (50 * pitch_range), volume
0-200 (100 * energy).

The library keeps state between utterances (so repeated calls are not bit-identical) and cannot be
re-initialised in one process, so each synthesis runs in a forked child that initialises it afresh; the
parent never loads it. Identical input then gives identical samples, which the corpus relies on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import threading

import numpy as np

from motion_server.phones import Phone, to_arpabet

from .base import Prosody, Speech, SpeechError, VoiceInfo, clean_text, finish
from .registry_data import backend_entry

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_DONT_EXIT = 0x8000
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_POS_CHARACTER = 1
_EV_LIST_TERMINATED, _EV_WORD, _EV_PHONEME = 0, 1, 7
_P_RATE, _P_VOLUME, _P_PITCH, _P_RANGE = 1, 2, 3, 4
_PITCH_UNITS_PER_OCTAVE = 68.0
_MARKER_CHARS = set("'\",%=;\\|")


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Engine:
    """Process-wide handle on libespeak-ng."""

    lock = threading.Lock()
    pid: int | None = None
    lib: ctypes.CDLL | None = None
    sr = 0
    callback = None
    chunks: list[np.ndarray] = []
    events: list[tuple[int, str, int, int, int]] = []  # (type, mnemonic, sample, text_pos, length)
    total = 0

    @classmethod
    def load(cls) -> ctypes.CDLL:
        if cls.lib is not None and cls.pid == os.getpid():
            return cls.lib
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            raise SpeechError("libespeak-ng is not installed; install it with: sudo apt-get install espeak-ng") from exc
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, _INIT_PHONEME_EVENTS | _INIT_DONT_EXIT)
        if sr <= 0:
            raise SpeechError("espeak_Initialize failed: is espeak-ng-data installed? (sudo apt-get install espeak-ng)")
        cls.callback = _Callback(cls._on_synth)
        lib.espeak_SetSynthCallback(cls.callback)
        cls.lib, cls.pid, cls.sr = lib, os.getpid(), int(sr)
        return lib

    @classmethod
    def _on_synth(cls, wav, n, events) -> int:
        if n > 0 and wav:
            cls.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != _EV_LIST_TERMINATED:
            e = events[i]
            if e.type == _EV_PHONEME:
                cls.events.append((_EV_PHONEME, e.id.string.decode("utf-8", "replace"), e.sample, 0, 0))
            elif e.type == _EV_WORD:
                cls.events.append((_EV_WORD, "", e.sample, e.text_position, e.length))
            i += 1
        cls.total += max(int(n), 0)
        return 0


def _clip(v: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, round(v))))


class EspeakBackend:
    name = "espeak"

    def __init__(self) -> None:
        self._entry = backend_entry(self.name)

    def available(self) -> bool:
        # loading the shared object is harmless; initialising it here would leave state in this process
        try:
            ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
        except OSError:
            return False
        return True

    def voices(self) -> list[VoiceInfo]:
        return [VoiceInfo(f"{self.name}:{v['name']}", self.name, v["name"], v["language"], v["gender"])
                for v in self._entry["voices"]]

    def synthesize(self, text: str, voice: str, prosody: Prosody | None = None) -> Speech:
        prosody = prosody or Prosody()
        text = clean_text(text)
        if voice not in {v["name"] for v in self._entry["voices"]}:
            names = ", ".join(v["name"] for v in self._entry["voices"])
            raise SpeechError(f"unknown eSpeak voice {voice!r}; known: {names}")
        raw = text.encode("utf-8")
        params = (
            _clip(175 * prosody.rate, 80, 450),
            _clip(50 + _PITCH_UNITS_PER_OCTAVE * np.log2(prosody.pitch), 0, 99),
            _clip(50 * prosody.pitch_range, 0, 100),
            _clip(100 * prosody.energy, 0, 200),
        )
        with _Engine.lock:
            pcm, events, sr = _synth_isolated(voice, raw, params)
        audio = pcm.astype(np.float32) / 32768.0
        phones = _events_to_phones(events, raw, len(audio), sr)
        return finish(audio, sr, phones, f"{self.name}:{voice}", text, prosody, VoiceInfo("", "", "", "").native_prosody)


def _synth_here(voice: str, raw: bytes, params: tuple[int, int, int, int]) -> tuple[np.ndarray, list, int]:
    lib = _Engine.load()
    if lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise SpeechError(f"espeak-ng has no voice {voice!r}; list them with: espeak-ng --voices")
    for param, value in zip((_P_RATE, _P_PITCH, _P_RANGE, _P_VOLUME), params, strict=True):
        lib.espeak_SetParameter(param, value, 0)
    _Engine.chunks, _Engine.events, _Engine.total = [], [], 0
    buf = ctypes.create_string_buffer(raw)
    rc = lib.espeak_Synth(buf, len(raw) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
    lib.espeak_Synchronize()
    if rc != 0:
        raise SpeechError(f"espeak_Synth failed with status {rc} for voice {voice!r}")
    if not _Engine.chunks:
        raise SpeechError(f"espeak-ng produced no audio for voice {voice!r}")
    return np.concatenate(_Engine.chunks), list(_Engine.events), _Engine.sr


def _synth_isolated(voice: str, raw: bytes, params: tuple[int, int, int, int]) -> tuple[np.ndarray, list, int]:
    """Synthesize in a forked child that initialises the library afresh.

    libespeak-ng carries state from one utterance to the next (glottal phase, clause context): the same
    text came out a few samples to 10% longer on a second call, and the library hangs if re-initialised
    in-process. A fresh child per utterance makes every synthesis identical for identical input.
    """
    if not hasattr(os, "fork"):  # non-POSIX: in-process, deterministic only for the first call
        return _synth_here(voice, raw, params)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 0
        try:
            os.close(r)
            try:
                pcm, events, sr = _synth_here(voice, raw, params)
                head = {"sr": sr, "events": events, "n": int(pcm.size)}
                payload = json.dumps(head).encode() + b"\n" + pcm.astype("<i2").tobytes()
            except BaseException as exc:  # report any failure to the parent
                payload = json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n"
                code = 1
            with os.fdopen(w, "wb") as f:
                f.write(payload)
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    head_raw, _, body = data.partition(b"\n")
    try:
        head = json.loads(head_raw or b"{}")
    except json.JSONDecodeError:
        head = {}
    if "error" in head:
        raise SpeechError(head["error"])
    if "sr" not in head or status != 0:
        raise SpeechError(f"the espeak-ng synthesis process failed (wait status {status}) for voice {voice!r}")
    pcm = np.frombuffer(body, dtype="<i2", count=head["n"]).copy()
    return pcm, [tuple(e) for e in head["events"]], int(head["sr"])


def _events_to_phones(events: list[tuple[int, str, int, int, int]], raw: bytes, n_samples: int,
                      sr: int) -> list[Phone]:
    """Phoneme events -> phones spanning from each event to the next; marker-only events are dropped."""
    marks: list[tuple[str, int, str | None]] = []
    word: str | None = None
    for etype, sym, sample, pos, length in events:
        if etype == _EV_WORD:
            # text_position is 1-based, in characters of the UTF-8 input
            chars = raw.decode("utf-8")
            word = chars[max(pos - 1, 0): max(pos - 1, 0) + length].strip() or None
            continue
        if not sym or (set(sym) <= _MARKER_CHARS):
            continue
        arpa = to_arpabet(sym, "espeak")
        marks.append((arpa, min(max(sample, 0), n_samples), None if arpa == "SIL" else word))
    phones: list[Phone] = []
    for k, (sym, sample, w) in enumerate(marks):
        end = marks[k + 1][1] if k + 1 < len(marks) else n_samples
        if end > sample:
            phones.append(Phone(sym, sample / sr, end / sr, None, w))
    return phones
