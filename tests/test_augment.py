"""Augmentation keeps phone times true (tempo moves them with the audio) and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from motion_server.phones import Phone
from motion_server.synth.augment import (
    AugmentConfig,
    add_noise,
    band_limit,
    gain,
    pitch_shift,
    random_augment,
    reverb,
    tempo,
)

SR = 16000
HOP = 0.005


def _voiced(sr: int = SR) -> tuple[np.ndarray, list[Phone]]:
    """0.5 s silence, 1.0 s of a buzzy 140 Hz 'vowel' with syllable-rate amplitude modulation, 0.5 s silence."""
    t = np.arange(int(2.0 * sr)) / sr
    x = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    env = ((t >= 0.5) & (t < 1.5)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    phones = [Phone("SIL", 0.0, 0.5), Phone("AA", 0.5, 1.0), Phone("M", 1.0, 1.1), Phone("AA", 1.1, 1.5),
              Phone("SIL", 1.5, 2.0)]
    return (0.3 * x * env).astype(np.float32), phones


def _onset_offset(x: np.ndarray, frac: float = 0.2) -> tuple[float, float]:
    h, w = int(HOP * SR), int(0.02 * SR)
    frames = np.lib.stride_tricks.sliding_window_view(x, w)[::h]
    e = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    above = np.nonzero(e > frac * e.max())[0]
    return above[0] * HOP + 0.01, above[-1] * HOP + 0.01


@pytest.mark.parametrize(
    "effect",
    [
        lambda x, r: pitch_shift(x, SR, 2.5),
        lambda x, r: gain(x, -9.0),
        lambda x, r: add_noise(x, SR, 20.0, "pink", r),
        lambda x, r: add_noise(x, SR, 25.0, "white", r),
        lambda x, r: reverb(x, SR, 0.4, r),
        lambda x, r: band_limit(x, SR),
    ],
    ids=["pitch", "gain", "pink-noise", "white-noise", "reverb", "telephone"],
)
def test_time_preserving_effects_keep_onsets(effect) -> None:
    x, _ = _voiced()
    y = effect(x, np.random.default_rng(0))
    assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
    on, off = _onset_offset(y)
    assert abs(on - 0.5) < 0.03, f"onset moved to {on:.3f}s"
    assert 1.45 < off < 1.62, f"offset moved to {off:.3f}s"  # reverb may add a short tail


def test_noise_snr_is_as_requested() -> None:
    x, _ = _voiced()
    y = add_noise(x, SR, 10.0, "white", np.random.default_rng(1))
    speech = np.abs(x) > 0.01 * np.abs(x).max()
    snr = 10 * np.log10(np.mean(x[speech] ** 2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(10.0, abs=0.5)
    babble = add_noise(x, SR, 5.0, "babble", np.random.default_rng(1), babble_sources=[x[::-1].copy(), x])
    assert not np.allclose(babble, x)
    with pytest.raises(ValueError, match="babble_sources"):
        add_noise(x, SR, 5.0, "babble", np.random.default_rng(1))


@pytest.mark.parametrize("rate", [0.8, 1.25])
def test_tempo_scales_audio_and_phones_together(rate: float) -> None:
    x, phones = _voiced()
    y, new = tempo(x, SR, phones, rate)
    factor = y.size / x.size
    assert factor == pytest.approx(1 / rate, rel=0.02)
    assert [p.symbol for p in new] == [p.symbol for p in phones]
    for a, b in zip(phones, new, strict=True):
        assert b.start == pytest.approx(a.start * factor, abs=1e-6)
        assert b.end == pytest.approx(min(a.end * factor, y.size / SR), abs=1e-6)
    on, off = _onset_offset(y)
    assert abs(on - new[1].start) < 0.03  # energy onset moved with the first vowel
    assert abs(off - new[3].end) < 0.05
    assert new[-1].end == pytest.approx(y.size / SR)


def test_random_augment_deterministic_and_phones_true() -> None:
    x, phones = _voiced()
    cfg = AugmentConfig(p_pitch=1, p_tempo=1, p_reverb=1, p_band=1, p_noise=1, noise_kinds=("babble",))
    a = random_augment(x, SR, phones, np.random.default_rng(7), cfg, babble_sources=[x])
    b = random_augment(x, SR, phones, np.random.default_rng(7), cfg, babble_sources=[x])
    c = random_augment(x, SR, phones, np.random.default_rng(8), cfg, babble_sources=[x])
    assert np.array_equal(a.audio, b.audio) and a.params == b.params and a.phones == b.phones
    assert not np.array_equal(a.audio[: c.audio.size], c.audio[: a.audio.size])
    assert {"tempo", "pitch_semitones", "rt60", "band", "noise", "gain_db"} <= set(a.params)
    assert a.clean.size == a.audio.size and a.phones[-1].end == pytest.approx(a.audio.size / SR)
    factor = a.audio.size / x.size
    assert a.phones[1].start == pytest.approx(0.5 * factor, abs=1e-6)
    # without tempo, every phone keeps its exact time
    d = random_augment(x, SR, phones, np.random.default_rng(7), AugmentConfig(p_tempo=0, p_pitch=1, p_noise=1))
    assert d.phones == phones and d.audio.size == x.size
    assert np.max(np.abs(d.audio)) <= 0.99 + 1e-6
