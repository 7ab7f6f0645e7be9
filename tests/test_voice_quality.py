"""Voice quality after synthesis (effort, tremor, breath): each is measurable in the audio, keeps its
length and timing, and leaves the voice alone at the defaults."""

from __future__ import annotations

import numpy as np
import pytest

from motion_server.synth.speech import Prosody, get_backend, synthesize
from motion_server.synth.speech.voice_quality import TREMOR_HZ, apply_voice_quality

SR = 16000


def _vowel(seconds: float = 2.0, f0: float = 150.0) -> np.ndarray:
    """A steady voiced sound: harmonics of f0 falling 6 dB/octave, up to 4 kHz."""
    t = np.arange(int(seconds * SR)) / SR
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, int(4000 / f0)))
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / SR)
    return float(10 * np.log10(spec[(f >= lo) & (f < hi)].sum() + 1e-20))


def test_defaults_leave_audio_untouched() -> None:
    x = _vowel()
    np.testing.assert_array_equal(apply_voice_quality(x, SR), x)


def test_effort_tilts_the_spectrum_by_12_db_per_doubling() -> None:
    x = _vowel()
    for effort, expect in ((2.0, 12.0), (0.5, -12.0)):
        y = apply_voice_quality(x, SR, effort=effort)
        assert y.size == x.size
        # well above the 1 kHz shelf the gain is the full amount; low harmonics are almost unchanged
        high = _band_db(y, 2500, 4000) - _band_db(x, 2500, 4000)
        low = _band_db(y, 100, 400) - _band_db(x, 100, 400)
        assert high == pytest.approx(expect, abs=1.5)
        assert abs(low) < 1.0


def test_tremor_shakes_loudness_and_pitch_at_5_5_hz() -> None:
    x = _vowel(4.0, f0=200.0)
    y = apply_voice_quality(x, SR, tremor_depth=1.0)
    assert y.size == x.size
    hop = SR // 100
    env = np.sqrt(np.convolve(y ** 2, np.ones(hop) / hop, mode="same"))[::hop][20:-20]
    spec = np.abs(np.fft.rfft(env - env.mean()))
    freqs = np.fft.rfftfreq(env.size, 1 / 100)
    assert freqs[np.argmax(spec)] == pytest.approx(TREMOR_HZ, abs=0.3)
    assert 0.25 < (env.max() - env.min()) / (env.max() + env.min()) < 0.45  # ~35 % loudness swing
    # pitch: the fundamental's period (from upward zero crossings of the lowest harmonic) wobbles by ~4 %
    from scipy.signal import butter, sosfiltfilt

    fund = sosfiltfilt(butter(4, 260, fs=SR, output="sos"), y)
    up = np.flatnonzero((fund[:-1] < 0) & (fund[1:] >= 0))
    f_inst = SR / np.diff(up)[10:-10]
    assert 0.03 < (f_inst.max() - f_inst.min()) / (2 * np.median(f_inst)) < 0.06
    assert np.median(f_inst) == pytest.approx(200.0, rel=0.01)


def test_breath_adds_noise_only_where_there_is_voice() -> None:
    x = np.concatenate([np.zeros(SR // 2, np.float32), _vowel(1.5, f0=120.0)])  # silence, then voice
    y = apply_voice_quality(x, SR, breathiness=0.6)
    voiced = slice(SR, 2 * SR)
    # harmonics stop at 4 kHz, so 4.5-6 kHz is noise only
    assert _band_db(y[voiced], 4500, 6000) - _band_db(x[voiced], 4500, 6000) > 20
    assert np.sqrt(np.mean(y[: SR // 4] ** 2)) < 1e-4  # silence stays silent


def test_prosody_rejects_out_of_range_voice_quality() -> None:
    with pytest.raises(ValueError, match=r"tremor=1\.5 is outside the usable range 0\.0\.\.1\.0"):
        Prosody(tremor=1.5)
    with pytest.raises(ValueError, match="effort"):
        Prosody(effort=0.0)


def test_synthesizer_applies_voice_quality_and_keeps_phone_times() -> None:
    if not get_backend("espeak").available():
        pytest.skip("espeak-ng is not installed (sudo apt-get install espeak-ng)")
    text = "Five big dogs jumped over the fence."
    plain = synthesize(text, "espeak:en-us")
    tense = synthesize(text, "espeak:en-us", Prosody(effort=2.0, tremor=0.5))
    assert tense.audio.size == plain.audio.size
    assert [(p.symbol, p.start, p.end) for p in tense.phones] == [(p.symbol, p.start, p.end) for p in plain.phones]
    tilt = (_band_db(tense.audio, 2000, 6000) - _band_db(tense.audio, 100, 1000)) \
        - (_band_db(plain.audio, 2000, 6000) - _band_db(plain.audio, 100, 1000))
    assert tilt > 6.0


def test_breath_noise_differs_between_clips_but_repeats_for_one() -> None:
    a, b = _vowel(1.0, f0=120.0), _vowel(1.0, f0=130.0)
    na = apply_voice_quality(a, SR, breathiness=0.5) - a * 0.85
    nb = apply_voice_quality(b, SR, breathiness=0.5) - b * 0.85
    assert abs(np.corrcoef(na, nb)[0, 1]) < 0.3  # not one shared noise waveform
    np.testing.assert_array_equal(apply_voice_quality(a, SR, breathiness=0.5), apply_voice_quality(a, SR, breathiness=0.5))


def test_audio_too_short_to_filter_is_left_alone() -> None:
    x = np.full(10, 0.1, np.float32)
    np.testing.assert_array_equal(apply_voice_quality(x, SR, effort=2.0, tremor_depth=1.0, breathiness=1.0), x)
