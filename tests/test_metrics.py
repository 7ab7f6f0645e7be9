"""Metric functions on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from motion_server.audio.loudness import audio_envelope
from motion_server.engine.base import GenerateOptions
from motion_server.engine.energy import EnergyEngine
from motion_server.evaluation import geometry, metrics
from motion_server.phones import Phone
from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_INDEX

FPS = 30.0


def _motion(jaw: np.ndarray, close: np.ndarray | None = None, head: np.ndarray | None = None) -> FaceMotion:
    w = np.zeros((len(jaw), 52), np.float32)
    w[:, ARKIT_INDEX["jawOpen"]] = jaw
    if close is not None:
        w[:, ARKIT_INDEX["mouthClose"]] = close
    return FaceMotion.from_arrays(w, head, FPS)


def _phones() -> list[Phone]:
    # 0.2 s per phone: M AA P AE B AH (bilabial, open vowel alternating)
    syms = ["M", "AA", "P", "AE", "B", "AH"]
    return [Phone(s, 0.2 * i, 0.2 * (i + 1)) for i, s in enumerate(syms)]


def _jaw_for(phones: list[Phone], n: int) -> np.ndarray:
    jaw = np.zeros(n, np.float32)
    for p in phones:
        a, b = int(round(p.start * FPS)), int(round(p.end * FPS))
        jaw[a:b] = 0.0 if p.symbol in metrics.BILABIALS else 0.6
    return jaw


def test_closure_and_ratio_for_a_correct_and_a_wrong_mouth():
    phones = _phones()
    good = _motion(_jaw_for(phones, 36))
    gap = geometry.lip_gap(good)
    assert metrics.bilabial_closure_rate(gap, phones, FPS) == 1.0
    assert metrics.open_bilabial_ratio(gap, phones, FPS) > 10
    # Mouth always half open: no bilabial closes, vowels and bilabials look alike.
    flat = geometry.lip_gap(_motion(np.full(36, 0.4, np.float32)))
    assert metrics.bilabial_closure_rate(flat, phones, FPS) == 0.0
    assert metrics.open_bilabial_ratio(flat, phones, FPS) == pytest.approx(1.0)
    # jawOpen cancelled by mouthClose counts as closed.
    closed = geometry.lip_gap(_motion(np.full(36, 0.4, np.float32), np.full(36, 0.4, np.float32)))
    assert metrics.bilabial_closure_rate(closed, phones, FPS) == 1.0
    # No bilabials: undefined, not 0 or 1.
    assert metrics.bilabial_closure_rate(gap, [Phone("AA", 0, 1)], FPS) is None


def test_lag_sign_and_size():
    rng = np.random.default_rng(0)
    env = np.convolve(rng.random(300), np.ones(5) / 5, mode="same")
    late = np.concatenate([np.full(3, env[0]), env[:-3]])  # mouth 3 frames after the audio
    early = np.concatenate([env[2:], np.full(2, env[-1])])  # mouth 2 frames before
    assert metrics.lag_frames(env, env) == 0
    assert metrics.lag_frames(late, env) == 3
    assert metrics.lag_frames(early, env) == -2


def test_jitter_blinks_head_seams():
    still = FaceMotion.from_arrays(np.full((60, 52), 0.3, np.float32), fps=FPS)
    j = metrics.jitter(still)
    assert all(v == 0.0 for v in j.values())
    # 4 blinks of 5 frames in 20 s -> 12 per minute, 1/6 s each.
    w = np.zeros((600, 52), np.float32)
    for start in (50, 200, 350, 500):
        w[start:start + 5, [ARKIT_INDEX["eyeBlinkLeft"], ARKIT_INDEX["eyeBlinkRight"]]] = 1.0
    b = metrics.blink_stats(FaceMotion.from_arrays(w, fps=FPS))
    assert b["blink_rate_per_min"] == pytest.approx(12.0)
    assert b["blink_duration_s"] == pytest.approx(5 / FPS)
    # Yaw sweeping at 30 deg/s.
    head = np.zeros((31, 6), np.float32)
    head[:, 1] = np.radians(np.arange(31) * 1.0)
    h = metrics.head_stats(FaceMotion.from_arrays(np.zeros((31, 52)), head, FPS))
    assert h["head_speed_deg_s"] == pytest.approx(30.0, rel=1e-3)
    # A ramp with a jump at frame 30: seam = the jump beyond the neighbouring steps / regular step; a
    # join inside the smooth ramp has no seam, and the no-join control of this motion is the one jump
    # spread over all other frames.
    ramp = np.linspace(0, 0.5, 60)
    ramp[30:] += 0.1
    m = _motion(ramp.astype(np.float64))
    step = 0.5 / 59
    assert metrics.seam_size(m, [30]) == pytest.approx(0.1 / step, rel=1e-3)
    assert metrics.seam_size(m, [45]) == pytest.approx(0.0, abs=1e-3)
    w = m.weights.copy()  # a blink that happens to start at a join is not a seam
    w[45:48, ARKIT_INDEX["eyeBlinkLeft"]] = w[45:48, ARKIT_INDEX["eyeBlinkRight"]] = 1.0
    assert metrics.seam_size(FaceMotion.from_arrays(w, None, FPS), [45]) == pytest.approx(0.0, abs=1e-3)
    # away from the join (and its two neighbours, which share its step) the ramp is smooth
    assert metrics.seam_control(m, [30]) == pytest.approx(0.0, abs=1e-3)
    assert metrics.seam_control(m, [45]) == pytest.approx((0.05 + 0.1 + 0.05) / step / 54, rel=1e-2)


def test_identical_motions_have_zero_error_and_diversity():
    rng = np.random.default_rng(1)
    head = (rng.random((40, 6)) * 0.1).astype(np.float32)
    m = FaceMotion.from_arrays(rng.random((40, 52)).astype(np.float32), head, FPS)
    gt = metrics.ground_truth_metrics(m, m)
    assert gt["lip_vertex_error_cm"] == 0 and gt["fdd_cm"] == 0 and gt["head_error_deg"] == 0
    assert gt["mae_mouth_jaw"] == 0 and gt["lip_gap_corr"] == pytest.approx(1.0)
    assert metrics.diversity([m, m]) == 0.0
    shifted = m.replace(weights=np.clip(m.weights + 0.1, 0, 1))
    assert metrics.lip_vertex_error(shifted, m) > 0.05
    assert metrics.diversity([m, shifted]) > 0


def test_energy_engine_opens_mouth_on_loud_audio_only():
    sr = 16000
    t = np.arange(sr * 2) / sr
    audio = (0.3 * np.sin(2 * np.pi * 180 * t) * (t > 1.0)).astype(np.float32)  # 1 s silence, 1 s tone
    m = EnergyEngine().generate(audio, sr, GenerateOptions())
    assert m.n_frames == 60
    jaw = m.channel("jawOpen")
    assert jaw[:20].max() < 0.05 and jaw[40:].min() > 0.4
    gap = geometry.lip_gap(m)
    assert metrics.lag_frames(gap, audio_envelope(audio, sr, FPS, 60)) == 0


@pytest.mark.parametrize("shift", [-2, 0, 3])
def test_a_shifted_copy_of_the_mouth_gives_the_shift_as_lag(shift):
    """The energy motion follows the loudness frame by frame; the same motion moved by k frames on the
    mesh (lip gap through the ICT face) is reported k frames late (positive) or early (negative)."""
    sr = 16000
    t = np.arange(sr * 6) / sr
    rng = np.random.default_rng(3)
    syllables = np.clip(np.sin(2 * np.pi * 3.3 * t + 4 * np.sin(2 * np.pi * 0.4 * t)), 0, None)
    audio = (syllables * (0.2 * np.sin(2 * np.pi * 150 * t) + 0.02 * rng.standard_normal(len(t)))).astype(np.float32)
    truth = EnergyEngine().generate(audio, sr, GenerateOptions())
    w = np.roll(truth.weights, shift, axis=0)
    env = audio_envelope(audio, sr, FPS, truth.n_frames)
    assert metrics.lag_frames(geometry.lip_gap(FaceMotion.from_arrays(w, fps=FPS)), env) == shift


def test_head_seed_difference_tells_the_same_path_from_independent_ones():
    rng = np.random.default_rng(0)
    t = np.arange(300) / 30.0

    def take(phase: float) -> FaceMotion:
        head = np.zeros((300, 6), np.float32)
        head[:, 1] = np.radians(3.0) * np.sin(2 * np.pi * 0.3 * t + phase)  # a 3 deg yaw sway
        head[:, 0] = np.radians(1.5) * np.sin(2 * np.pi * 0.2 * t + 2 * phase)
        return FaceMotion.from_arrays(np.zeros((300, 52), np.float32), head, fps=30.0)

    same = metrics.head_seed_difference([take(0.0), take(0.0)])
    other = metrics.head_seed_difference([take(0.0), take(float(rng.uniform(2, 4)))])
    assert same == pytest.approx(0.0, abs=1e-9)
    assert other > 0.5  # different seeds, visibly different head motion
    still = FaceMotion.from_arrays(np.zeros((300, 52), np.float32), np.zeros((300, 6), np.float32), fps=30.0)
    assert metrics.head_seed_difference([still, still]) is None
