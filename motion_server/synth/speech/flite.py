"""Flite backend.

Timing: exact to Flite's own segment targets. ``flite -psdur`` prints every item of the utterance's
``Segment`` relation with its end time after synthesis. For the clustergen voices (awb, rms, slt) the
waveform frames are generated from exactly these durations (5 ms frames); for the diphone voices
(kal, kal16) the LPC units are warped onto them, measured within ~10 ms of the audible boundaries. The
final pause can be longer than the wave; phones are clipped to the audio length. Flite reports no word
or stress per segment, so those stay ``None``.

Prosody: ``duration_stretch`` for rate, ``f0_shift`` (F0 multiplier) for pitch on the voices that honour it
(not rms; its pitch is shifted after synthesis). Pitch range is left at the voice default.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from motion_server.phones import Phone, to_arpabet

from .base import (
    ProgramBackend,
    Prosody,
    Speech,
    SpeechError,
    clean_text,
    finish,
    require_program,
    run_program,
)


@lru_cache(maxsize=1)
def _installed_voices() -> frozenset[str]:
    """Voice names ``flite -lv`` lists (compiled-in voices)."""
    import shutil

    exe = shutil.which("flite")
    if exe is None:
        return frozenset()
    try:
        out = run_program([exe, "-lv"], timeout=30)
    except SpeechError:
        return frozenset()
    return frozenset(out.split(":", 1)[-1].split())


class FliteBackend(ProgramBackend):
    name = "flite"
    program = "flite"
    label = "Flite"

    def installed_voices(self) -> frozenset[str]:
        return _installed_voices()

    def synthesize(self, text: str, voice: str, prosody: Prosody | None = None) -> Speech:
        import soundfile as sf

        prosody = prosody or Prosody()
        text = clean_text(text).encode("ascii", "ignore").decode("ascii")
        exe = require_program("flite", self._entry["apt"])
        v = self._voice(voice)
        if not self.installed(voice):
            raise SpeechError(f"this flite has no voice {voice!r} (flite -lv lists {sorted(_installed_voices())}); "
                              f"install the Debian build with: sudo apt-get install {self._entry['apt']}")
        native = tuple(v["native_prosody"])
        with tempfile.TemporaryDirectory(prefix="talkrig_flite_") as tmp:
            wav = Path(tmp) / "out.wav"
            cmd = [exe, "-voice", voice, "--setf", f"duration_stretch={1.0 / prosody.rate:.4f}"]
            if "pitch" in native:
                cmd += ["--setf", f"f0_shift={prosody.pitch:.4f}"]
            cmd += ["-psdur", "-t", text, "-o", str(wav)]
            out = run_program(cmd)
            if not wav.is_file():
                raise SpeechError(f"flite wrote no audio for voice {voice!r}")
            audio, sr = sf.read(wav, dtype="float32", always_2d=True)
        phones: list[Phone] = []
        start = 0.0
        for tok in " ".join(out.splitlines()).split():
            sym, sep, end_s = tok.rpartition(":")
            if not sep:
                continue
            try:
                end = float(end_s)
            except ValueError:
                continue
            phones.append(Phone(to_arpabet(sym, "cmu"), start, end))
            start = end
        if not phones:
            raise SpeechError(f"flite printed no segments for {text!r}: {out.strip()[-300:]}")
        return finish(np.mean(audio, axis=1), int(sr), phones, f"{self.name}:{voice}", text, prosody, native)
