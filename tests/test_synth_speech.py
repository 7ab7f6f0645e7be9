"""Speech backends: phone timings line up with the audio; phone normalisation; voice registry."""

from __future__ import annotations

import numpy as np
import pytest

from motion_server.phones import (
    Phone,
    PhoneError,
    arpabet_symbols,
    load_phones,
    phone_sources,
    save_phones,
    speech_span,
    to_arpabet,
    validate_phones,
)
from motion_server.synth.speech import Prosody, SpeechError, get_backend, list_voices, synthesize

TEXT = "Well, maybe. Five big dogs jumped over the fence!"
VOICES = [
    "festival:kal_diphone",
    "festival:cmu_us_slt_arctic_hts",
    "flite:slt",
    "flite:kal",
    "flite:awb",
    "flite:rms",
    "espeak:en-us",
    "espeak:de",
    *(f"espeak:{lang}" for lang in ("fr", "es", "it", "pt-br", "nl", "pl", "sv")),
]
HOP = 0.005
WIN = 0.02


def _need(voice_id: str) -> None:
    backend = get_backend(voice_id.split(":")[0])
    if not backend.available():
        pytest.skip(f"{backend.name} is not installed (apt package named in SpeechError)")


def _envelope(audio: np.ndarray, sr: int) -> np.ndarray:
    h, w = int(HOP * sr), int(WIN * sr)
    n = max(1, (audio.size - w) // h + 1)
    frames = np.lib.stride_tricks.sliding_window_view(audio, w)[::h][:n]
    return np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))


def _energy_in(env: np.ndarray, a: float, b: float) -> float:
    i0, i1 = int(a / HOP), int((b - WIN) / HOP)
    return float(env[i0:i1].max()) if i1 > i0 else 0.0


@pytest.mark.parametrize("voice", VOICES)
def test_phone_timings_match_audio(voice: str) -> None:
    _need(voice)
    if voice.endswith(":de"):
        text = "Guten Tag. Wir gehen heute ins Kino, sagte sie."
    elif voice.startswith("espeak:") and not voice.startswith("espeak:en"):
        from motion_server.synth.speech import voice_info
        from motion_server.synth.text import load_sentences

        text = " ".join(s.text for s in load_sentences(voice_info(voice).language)[1:3])  # two sentences
    else:
        text = TEXT
    s = synthesize(text, voice)
    assert s.audio.dtype == np.float32 and s.audio.ndim == 1 and s.sr >= 8000
    validate_phones(s.phones)
    # phones tile the audio from 0 to its very end
    assert s.phones[0].start == 0.0
    assert s.phones[-1].end == pytest.approx(s.duration, abs=1e-6)
    assert all(abs(a.end - b.start) < 1e-6 for a, b in zip(s.phones, s.phones[1:], strict=False))
    assert sum(not p.is_silence for p in s.phones) >= 15

    env = _envelope(s.audio, s.sr)
    thr = 0.1 * env.max()
    onset = np.argmax(env > thr) * HOP + WIN / 2
    first, last = speech_span(s.phones)
    # a weak first consonant (/v/, /f/) may stay under the threshold: then energy starts with the next phone
    first_end = next(p.end for p in s.phones if not p.is_silence)
    assert first - 0.04 < onset < max(first + 0.04, first_end + 0.01), \
        f"energy starts at {onset:.3f}s, first phone spans {first:.3f}-{first_end:.3f}s"
    # the audio after the last speech phone is quiet, the last speech phone itself is not
    assert _energy_in(env, last + 0.03, s.duration) < 0.1 * env.max()
    # interior pauses are quiet; vowels are loud
    pauses = [p for p in s.phones[1:-1] if p.is_silence and p.duration > 0.12]
    if not voice.endswith("_hts"):  # the HTS voice inserts no pauses inside one utterance
        assert pauses, "expected a pause at the full stop"
    for p in pauses:
        assert _energy_in(env, p.start + 0.03, p.end - 0.01) < 0.12 * env.max(), f"pause {p} is not silent"
    vowels = [p for p in s.phones if p.symbol in ("AY", "AH", "EY", "IY", "UW", "OW", "AA", "IH", "EH") and p.duration > 0.05]
    loud = [_energy_in(env, p.start, p.end + WIN) > 0.1 * env.max() for p in vowels]
    assert np.mean(loud) > 0.9


@pytest.mark.parametrize("voice", ["festival:kal_diphone", "flite:slt", "espeak:en-us"])
def test_rate_changes_duration_and_phones_follow(voice: str) -> None:
    _need(voice)
    slow = synthesize("Five big dogs jumped over the fence.", voice, Prosody(rate=0.7))
    fast = synthesize("Five big dogs jumped over the fence.", voice, Prosody(rate=1.4))
    span = [speech_span(s.phones) for s in (slow, fast)]
    assert (span[0][1] - span[0][0]) > 1.5 * (span[1][1] - span[1][0])
    assert [p.symbol for p in slow.phones if not p.is_silence] == [p.symbol for p in fast.phones if not p.is_silence]


def test_espeak_pitch_and_determinism() -> None:
    _need("espeak:en-us")
    import librosa

    a = synthesize("Hello there, how are you today?", "espeak:en-us")
    b = synthesize("Hello there, how are you today?", "espeak:en-us")
    assert np.array_equal(a.audio, b.audio) and a.phones == b.phones  # the library keeps no state between calls
    hi = synthesize("Hello there, how are you today?", "espeak:en-us", {"pitch": 1.4})

    def f0(s):
        f = librosa.yin(s.audio, fmin=60, fmax=400, sr=s.sr)
        return float(np.median(f))

    assert f0(hi) > 1.2 * f0(a)


def test_voice_registry() -> None:
    voices = list_voices(installed_only=False)
    ids = {v.id for v in voices}
    assert {"festival:kal_diphone", "festival:cmu_us_slt_arctic_hts", "flite:awb", "flite:slt", "espeak:en-us"} <= ids
    other = {v.language for v in voices if v.backend == "espeak" and not v.language.startswith("en")}
    assert len(other) >= 6
    with pytest.raises(SpeechError, match="backend:name"):
        synthesize("hi", "en-us")
    with pytest.raises(SpeechError, match="unknown"):
        synthesize("hi", "flite:nobody")


def test_missing_program_names_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SpeechError, match="apt-get install festival"):
        synthesize("hello", "festival:kal_diphone")
    with pytest.raises(SpeechError, match="apt-get install flite"):
        synthesize("hello", "flite:slt")


def test_to_arpabet_tables() -> None:
    symbols = set(arpabet_symbols())
    assert len(symbols) == 40 and "SIL" in symbols
    assert to_arpabet("pau", "radio") == "SIL" and to_arpabet("ax", "radio") == "AH"
    assert to_arpabet("AH1", "cmu") == "AH"
    assert to_arpabet("aI", "espeak") == "AY" and to_arpabet("S", "espeak") == "SH" and to_arpabet("_:", "espeak") == "SIL"
    assert to_arpabet("'eI", "espeak") == "EY"  # stress marker stripped
    assert to_arpabet("y:", "espeak") == "UW"  # German/French front rounded vowel -> rounded lips
    assert to_arpabet("ˈʃ", "ipa") == "SH" and to_arpabet("aɪ", "ipa") == "AY"
    assert to_arpabet("@@", "mrpa") == "ER"
    with pytest.raises(PhoneError):
        to_arpabet("§§", "espeak", strict=True)
    assert to_arpabet("§§", "espeak") == "AH"
    for src in phone_sources():
        for sym in ("pau", "_", "#", "ə", "a"):
            assert to_arpabet(sym, src) in symbols


def test_phones_json_roundtrip(tmp_path) -> None:
    phones = [Phone("SIL", 0.0, 0.1), Phone("HH", 0.1, 0.18, 0, "hello"), Phone("AH", 0.18, 0.3, 1, "hello")]
    save_phones(phones, tmp_path / "p.json")
    assert load_phones(tmp_path / "p.json") == phones
    (tmp_path / "bad.json").write_text('{"phones": [{"symbol": "XX", "start": 0, "end": 1}]}')
    with pytest.raises(PhoneError, match="non-ARPAbet"):
        load_phones(tmp_path / "bad.json")
    with pytest.raises(PhoneError, match="before previous end"):
        validate_phones([Phone("AA", 0.0, 0.5), Phone("B", 0.3, 0.6)])


def test_setup_and_docs_name_every_synthesizer_package() -> None:
    """The corpus's Debian packages (voices.json) are installed by scripts/setup.sh and listed in the
    README, so a fresh machine set up as documented can build the corpus."""
    import re
    from pathlib import Path

    from motion_server.synth.speech.registry_data import voices_data

    repo = Path(__file__).resolve().parents[1]
    needed = {pkg for entry in voices_data().values() if isinstance(entry, dict) for pkg in entry["apt"].split()}
    assert {"festival", "festvox-kallpc16k", "festvox-us-slt-hts", "flite", "espeak-ng"} <= needed
    m = re.search(r"^APT_PKGS=\(([^)]*)\)", (repo / "scripts" / "setup.sh").read_text(), re.M)
    assert m, "scripts/setup.sh has no APT_PKGS=(...) list"
    assert needed <= set(m.group(1).split()), f"setup.sh does not install {needed - set(m.group(1).split())}"
    readme = (repo / "README.md").read_text(encoding="utf-8")
    assert [p for p in sorted(needed) if p not in readme] == [], "README.md must name every package the corpus needs"
