"""Festival backend.

Timing: exact. A Scheme script run by ``festival --pipe`` synthesizes the utterance, writes the wave with
``utt.save.wave`` and prints every item of the ``Segment`` relation with its ``end`` feature. Those ends
are what the waveform generator used: for the diphone voice the residual-LPC concatenation maps units onto
exactly these targets; for the HTS voice Festival writes the HMM state durations back into the segments
(multiples of the 5 ms frame). The last pause may be cut short by the wave; phones are clipped to the
audio length.

Prosody: ``Duration_Stretch`` (diphone) or the HTS engine's ``-r`` speed for rate; ``int_lr_params``
target mean/std for pitch and pitch range on the diphone voice. The HTS voice's pitch is shifted after
synthesis (Festival's HTS module ignores the half-tone option).
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

_MARK = "@@SEG"


def _scheme_string(text: str) -> str:
    # Festival reads Latin-1 Scheme strings; keep ASCII so odd characters cannot break the script.
    text = text.encode("ascii", "ignore").decode("ascii")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


@lru_cache(maxsize=1)
def _installed_voices() -> frozenset[str]:
    """Voice names Festival reports with ``(voice.list)`` (voice packages are separate apt packages)."""
    import shutil

    exe = shutil.which("festival")
    if exe is None:
        return frozenset()
    try:
        out = run_program([exe, "--pipe"], input_text="(print (voice.list))\n", timeout=60)
    except SpeechError:
        return frozenset()
    return frozenset(out.replace("(", " ").replace(")", " ").split())


class FestivalBackend(ProgramBackend):
    name = "festival"
    program = "festival"
    label = "Festival"

    def installed_voices(self) -> frozenset[str]:
        return _installed_voices()

    def _script(self, text: str, v: dict, prosody: Prosody, wav: Path) -> str:
        name = v["name"]
        lines = [f"(voice_{name})"]
        if name.endswith("_hts"):
            # -r is the HTS engine's speed factor (>1 faster); appended after the voice's own params.
            lines.append(f"(set! hts_engine_params (append hts_engine_params (list '(\"-r\" {prosody.rate:.4f}))))")
        else:
            lines.append(f"(Parameter.set 'Duration_Stretch {1.0 / prosody.rate:.4f})")
            mean = v["f0_mean"] * prosody.pitch
            std = v["f0_std"] * prosody.pitch * prosody.pitch_range
            lines.append(
                f"(set! int_lr_params '((target_f0_mean {mean:.3f}) (target_f0_std {std:.3f}) "
                "(model_f0_mean 170) (model_f0_std 34)))"
            )
        lines += [
            f"(set! talkrig_utt (utt.synth (Utterance Text {_scheme_string(text)})))",
            f"(utt.save.wave talkrig_utt {_scheme_string(str(wav))} 'riff)",
            "(mapcar (lambda (s) (format t \"" + _MARK + " %s %f %s %s\\n\" (item.name s) (item.feat s \"end\")"
            " (item.feat s \"R:SylStructure.parent.stress\") (item.feat s \"R:SylStructure.parent.parent.name\")))"
            " (utt.relation.items talkrig_utt 'Segment))",
        ]
        return "\n".join(lines) + "\n"

    def synthesize(self, text: str, voice: str, prosody: Prosody | None = None) -> Speech:
        import soundfile as sf

        prosody = prosody or Prosody()
        text = clean_text(text)
        exe = require_program("festival", self._entry["apt"])
        v = self._voice(voice)
        if not self.installed(voice):
            raise SpeechError(f"Festival voice {voice!r} is not installed; install it with: "
                              f"sudo apt-get install {self._entry['apt']}")
        with tempfile.TemporaryDirectory(prefix="talkrig_fest_") as tmp:
            wav = Path(tmp) / "out.wav"
            out = run_program([exe, "--pipe"], input_text=self._script(text, v, prosody, wav))
            if not wav.is_file():
                raise SpeechError(f"festival wrote no audio for voice {voice!r}: {out.strip()[-300:]}")
            audio, sr = sf.read(wav, dtype="float32", always_2d=True)
        phones: list[Phone] = []
        start = 0.0
        for line in out.splitlines():
            if not line.startswith(_MARK):
                continue
            parts = line.split()
            sym, end = parts[1], float(parts[2])
            stress = int(parts[3]) if parts[3].isdigit() else None
            word = parts[4] if len(parts) > 4 and parts[4] != "0" else None
            arpa = to_arpabet(sym, v["phoneset"])
            phones.append(Phone(arpa, start, end, None if arpa == "SIL" else stress, None if arpa == "SIL" else word))
            start = end
        if not phones:
            raise SpeechError(f"festival returned no segments for {text!r}: {out.strip()[-300:]}")
        return finish(np.mean(audio, axis=1), int(sr), phones, f"{self.name}:{voice}", text, prosody,
                      tuple(v["native_prosody"]))
