"""FaceMotion: validation, slicing, concatenation, resampling, smoothing, mirroring."""

from __future__ import annotations

import numpy as np
import pytest

from rig_mapping import ARKIT_INDEX, ARKIT_NAMES, FaceMotion, MotionError
from rig_mapping.arkit import LR_PAIRS


def ramp_motion(n: int = 90, fps: float = 30.0) -> FaceMotion:
    w = np.zeros((n, 52), np.float32)
    w[:, ARKIT_INDEX["jawOpen"]] = np.arange(n) / (n + 10)  # a straight ramp over time
    w[:, ARKIT_INDEX["eyeBlinkLeft"]] = 0.5
    h = np.zeros((n, 6), np.float32)
    h[:, 1] = np.linspace(-0.2, 0.3, n)
    return FaceMotion.from_arrays(w, h, fps=fps, meta={"seed": 3})


# -- validation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(10, 51), (10,), (10, 52, 1)])
def test_wrong_weight_shape_is_refused(shape):
    with pytest.raises(MotionError, match=r"\[T, 52\]"):
        FaceMotion.from_arrays(np.zeros(shape, np.float32))


def test_dtype_must_be_float32_when_constructed_directly():
    with pytest.raises(MotionError, match="float32"):
        FaceMotion(fps=30, weights=np.zeros((4, 52), np.float64), head=np.zeros((4, 6), np.float32))
    with pytest.raises(MotionError, match="numeric"):
        FaceMotion(fps=30, weights=np.zeros((4, 52), dtype="U3"), head=np.zeros((4, 6), np.float32))


def test_nan_is_refused_naming_frame_and_channel():
    w = np.zeros((5, 52), np.float32)
    w[3, ARKIT_INDEX["jawOpen"]] = np.nan
    with pytest.raises(MotionError, match=r"frame 3.*jawOpen"):
        FaceMotion.from_arrays(w)


def test_out_of_range_weights_refused_or_clamped_with_warning():
    w = np.zeros((5, 52), np.float32)
    w[2, 0] = 1.3
    with pytest.raises(MotionError, match=r"\[0, 1\].*eyeBlinkLeft"):
        FaceMotion.from_arrays(w)
    with pytest.warns(UserWarning, match="clamped 1"):
        m = FaceMotion.from_arrays(w, clamp=True)
    assert m.weights[2, 0] == 1.0


def test_head_in_degrees_and_bad_fps_and_mismatched_lengths_are_refused():
    with pytest.raises(MotionError, match="degrees"):
        FaceMotion.from_arrays(np.zeros((3, 52)), np.full((3, 6), 20.0))
    with pytest.raises(MotionError, match="fps"):
        FaceMotion.from_arrays(np.zeros((3, 52)), fps=0)
    with pytest.raises(MotionError, match="frames"):
        FaceMotion.from_arrays(np.zeros((3, 52)), np.zeros((4, 6)))


def test_arrays_are_read_only():
    m = ramp_motion(5)
    with pytest.raises(ValueError):
        m.weights[0, 0] = 1.0


# -- slicing / concatenation ----------------------------------------------------------------------

def test_slicing_and_seconds():
    m = ramp_motion(90)
    part = m[10:40]
    assert part.n_frames == 30 and part.fps == 30
    np.testing.assert_array_equal(part.weights, m.weights[10:40])
    assert m.slice_seconds(1.0, 2.0).n_frames == 30
    half = m[::2]
    assert half.fps == 15 and abs(half.duration - m.duration) < 1e-9
    with pytest.raises(TypeError):
        m[3]


def test_concatenate_restores_the_original_and_refuses_mixed_fps():
    m = ramp_motion(90)
    joined = FaceMotion.concatenate([m[:30], m[30:70], m[70:]])
    assert joined == m
    with pytest.raises(MotionError, match="resample"):
        FaceMotion.concatenate([m, m.resample(24)])
    with pytest.raises(MotionError):
        FaceMotion.concatenate([])


# -- resampling -----------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [24.0, 25.0, 60.0])
def test_resample_keeps_duration_and_a_ramp_stays_a_ramp(fps):
    m = ramp_motion(90, 30.0)
    r = m.resample(fps)
    assert r.fps == fps
    assert r.n_frames == round(m.duration * fps)
    assert abs(r.duration - m.duration) < 1.0 / fps
    expected = r.times * 30.0 / 100.0  # jawOpen = frame / 100 at 30 fps
    np.testing.assert_allclose(r.channel("jawOpen"), expected, atol=1e-6)
    np.testing.assert_allclose(r.channel("eyeBlinkLeft"), 0.5, atol=1e-7)
    np.testing.assert_allclose(np.diff(r.channel("yaw")), np.diff(r.channel("yaw")).mean(), atol=1e-6)
    assert r.meta == m.meta


def test_resample_round_trip_and_edge_cases():
    m = ramp_motion(90, 30.0)
    back = m.resample(60).resample(30)
    assert back.allclose(m, atol=1e-5)
    assert FaceMotion.neutral(0).resample(24).n_frames == 0
    one = FaceMotion.neutral(1).resample(60)
    assert one.n_frames == 2
    with pytest.raises(MotionError):
        m.resample(-5)


# -- smoothing ------------------------------------------------------------------------------------

def test_smoothing_reduces_jitter_keeps_constants_and_range():
    rng = np.random.default_rng(0)
    w = np.clip(0.5 + 0.2 * rng.standard_normal((200, 52)), 0, 1).astype(np.float32)
    w[:, 5] = 0.7
    m = FaceMotion.from_arrays(w)
    s = m.smoothed(2.0)
    assert np.diff(s.weights[:, 0]).std() < 0.5 * np.diff(m.weights[:, 0]).std()
    np.testing.assert_allclose(s.weights[:, 5], 0.7, atol=1e-6)
    assert s.weights.min() >= 0 and s.weights.max() <= 1
    only = m.smoothed(2.0, channels=["jawOpen"])
    np.testing.assert_array_equal(only.weights[:, 0], m.weights[:, 0])
    assert not np.array_equal(only.channel("jawOpen"), m.channel("jawOpen"))
    with pytest.raises(KeyError, match="jawOpn"):
        m.smoothed(1.0, channels=["jawOpn"])


# -- mirroring ------------------------------------------------------------------------------------

def test_mirroring_swaps_sides_and_negates_yaw_roll_x():
    rng = np.random.default_rng(1)
    h = rng.uniform(-0.3, 0.3, (10, 6))
    m = FaceMotion.from_arrays(rng.random((10, 52)), h)
    mm = m.mirrored()
    for left, right in LR_PAIRS:
        np.testing.assert_array_equal(mm.channel(left), m.channel(right))
    np.testing.assert_array_equal(mm.channel("jawOpen"), m.channel("jawOpen"))
    np.testing.assert_allclose(mm.head[:, [1, 2, 3]], -m.head[:, [1, 2, 3]])
    np.testing.assert_allclose(mm.head[:, [0, 4, 5]], m.head[:, [0, 4, 5]])
    assert mm.mirrored() == m
    assert len(LR_PAIRS) == 20 and all(a in ARKIT_NAMES for a, _ in LR_PAIRS)
