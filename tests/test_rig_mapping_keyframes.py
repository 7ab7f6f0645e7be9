"""Keyframe reduction: linear interpolation of the kept keys stays within tol at every frame."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig_mapping import ARKIT_NAMES, HEAD_CHANNELS, FaceMotion
from rig_mapping.keyframes import expand_keys, reduce_curve, reduce_motion


def max_err(y: np.ndarray, tol: float) -> tuple[float, int]:
    f, v = reduce_curve(y, tol)
    assert f[0] == 0 and f[-1] == len(y) - 1 and np.all(np.diff(f) > 0)
    np.testing.assert_array_equal(v, np.asarray(y, np.float64)[f])  # keys are original samples
    return float(np.abs(expand_keys(f, v, len(y)) - y).max()), len(f)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(3, 400), tol=st.sampled_from([0.0, 1e-4, 1e-3, 0.01, 0.1]))
def test_random_curves_stay_within_tolerance(seed, n, tol):
    y = np.random.default_rng(seed).random(n)
    err, _ = max_err(y, tol)
    assert err <= tol + 1e-12


@pytest.mark.parametrize(("tol", "max_fraction"), [(1e-4, 0.45), (1e-3, 0.15), (1e-2, 0.05)])
def test_smooth_curves_are_within_tolerance_and_much_smaller(tol, max_fraction):
    t = np.linspace(0, 4 * np.pi, 600)
    y = 0.5 + 0.4 * np.sin(t) * np.exp(-t / 10)
    err, n_keys = max_err(y, tol)
    assert err <= tol
    assert n_keys < max_fraction * len(y)


def test_constant_curve_needs_two_keys_and_lines_are_exact():
    assert max_err(np.full(100, 0.3), 0.0) == (0.0, 2)
    assert max_err(np.linspace(0.1, 0.9, 50), 1e-9)[1] == 2


def test_step_function_keeps_both_sides_of_the_step():
    y = np.zeros(60)
    y[25:] = 1.0
    f, v = reduce_curve(y, 1e-3)
    assert list(f) == [0, 24, 25, 59]
    np.testing.assert_array_equal(expand_keys(f, v, 60), y)
    pulse = np.zeros(40)
    pulse[10:13] = 0.8
    err, n = max_err(pulse, 0.0)
    assert err == 0.0 and n == 6


def test_tiny_curves_and_bad_input():
    assert reduce_curve(np.array([0.2]), 0.01)[0].tolist() == [0]
    assert reduce_curve(np.array([]), 0.01)[0].size == 0
    with pytest.raises(ValueError, match="NaN"):
        reduce_curve(np.array([0.0, np.nan, 1.0]), 0.01)
    with pytest.raises(ValueError, match="tolerance"):
        reduce_curve(np.zeros(5), -1)
    with pytest.raises(ValueError, match="1-D"):
        reduce_curve(np.zeros((5, 2)), 0.1)


def test_reduce_motion_counts_every_channel_and_respects_both_tolerances():
    rng = np.random.default_rng(2)
    n = 300
    w = np.zeros((n, 52), np.float32)
    t = np.arange(n) / 30
    w[:, 17] = 0.5 + 0.5 * np.sin(2 * np.pi * 1.3 * t) ** 2  # jawOpen, smooth
    w[:, 0] = (rng.random(n) > 0.95).astype(np.float32)  # blinks: steps
    h = np.zeros((n, 6), np.float32)
    h[:, 1] = 0.2 * np.sin(t)
    m = FaceMotion.from_arrays(w, h)
    keys = reduce_motion(m, tol=1e-3, head_tol=1e-4)
    assert set(keys.counts) == set(ARKIT_NAMES) | set(HEAD_CHANNELS)
    assert keys.total_keys == sum(keys.counts.values())
    assert keys.dense_keys == n * 58
    assert keys.counts["mouthClose"] == 2  # constant zero channel
    assert keys.total_keys < 0.2 * keys.dense_keys
    errs = keys.max_error(m)
    assert max(errs[c] for c in ARKIT_NAMES) <= 1e-3
    assert max(errs[c] for c in HEAD_CHANNELS) <= 1e-4
    assert keys.summary()["per_channel"]["jawOpen"] == keys.counts["jawOpen"]
    only = reduce_motion(m, 1e-3, channels=["jawOpen", "yaw"])
    assert set(only.keys) == {"jawOpen", "yaw"}
    with pytest.raises(KeyError):
        reduce_motion(m, 1e-3, channels=["jaw"])


def test_reduce_named_curves_of_a_mapped_motion():
    from rig_mapping.keyframes import reduce_curves
    from rig_mapping.profile import apply_profile, load_profile

    t = np.arange(120) / 30
    w = np.zeros((120, 52), np.float32)
    w[:, 17] = 0.5 + 0.4 * np.sin(3 * t)  # jawOpen
    mapped = apply_profile(FaceMotion.from_arrays(w), load_profile("oculus_visemes"))
    keys = reduce_curves(mapped.shapes, 1e-3)
    assert set(keys) == set(mapped.shapes)
    for name, (f, v) in keys.items():
        assert np.abs(expand_keys(f, v, 120) - mapped.shapes[name]).max() <= 1e-3
    assert len(keys["viseme_PP"][0]) == 2 and len(keys["viseme_aa"][0]) > 2
