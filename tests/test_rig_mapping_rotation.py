"""rig_mapping.rotation: the numpy rotation maths the add-on keys bones with (no Blender needed)."""

from __future__ import annotations

import numpy as np
import pytest

from rig_mapping import rotation

ORDERS = rotation.EULER_ORDERS


def test_single_axis_turns():
    q = rotation.euler_to_quat(np.array([[np.pi / 2, 0.0, 0.0]]), "XYZ")
    np.testing.assert_allclose(q, [[np.cos(np.pi / 4), np.sin(np.pi / 4), 0.0, 0.0]], atol=1e-12)
    m = rotation.quat_to_matrix(q)[0]
    np.testing.assert_allclose(m @ [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], atol=1e-12)  # +90 deg about X: Y -> Z


@pytest.mark.parametrize("order", ORDERS)
def test_round_trips(order: str):
    rng = np.random.default_rng(3)
    e = rng.uniform(-1.2, 1.2, (40, 3))
    q = rotation.euler_to_quat(e, order)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(rotation.quat_to_euler(q, order), e, atol=1e-9)
    aa = rotation.quat_to_axis_angle(q)
    back = rotation.axis_angle_to_quat(aa)
    assert np.allclose(np.abs(np.einsum("ij,ij->i", back, q)), 1.0, atol=1e-9)  # same rotation (q or -q)
    for dst in ORDERS:
        r = rotation.reorder_euler(e, order, dst)
        np.testing.assert_allclose(rotation.quat_to_matrix(rotation.euler_to_quat(r, dst)),
                                   rotation.quat_to_matrix(q), atol=1e-9)
    # Blender's composition: "XYZ" applies X first, so its matrix is Rz @ Ry @ Rx
    mats = [rotation.quat_to_matrix(rotation.euler_to_quat(np.eye(3)[a][None] * e[0, a], order))[0] for a in range(3)]
    i, j, k = ("XYZ".index(c) for c in order)
    np.testing.assert_allclose(rotation.quat_to_matrix(q[:1])[0], mats[k] @ mats[j] @ mats[i], atol=1e-12)


def test_curves_stay_continuous():
    t = np.linspace(0.0, 4 * np.pi, 200)
    e = np.stack([t, 0.3 * np.sin(t), np.zeros_like(t)], axis=1)
    q = rotation.euler_to_quat(e, "XYZ")
    assert (np.einsum("ij,ij->i", q[1:], q[:-1]) > 0).all()  # one hemisphere: no long-way interpolation
    back = rotation.quat_to_euler(q, "XYZ")
    assert np.abs(np.diff(back, axis=0)).max() < 0.1  # no 2*pi jumps while turning twice round
    np.testing.assert_allclose(back, e, atol=1e-9)


def test_bad_order_and_identity():
    with pytest.raises(ValueError, match="Euler order"):
        rotation.euler_to_quat(np.zeros((1, 3)), "XXY")
    np.testing.assert_allclose(rotation.quat_to_axis_angle(np.array([[1.0, 0, 0, 0]])), [[0.0, 0.0, 1.0, 0.0]])
    np.testing.assert_allclose(rotation.axis_angle_to_quat(np.array([[1.0, 0, 0, 0]])), [[1.0, 0, 0, 0]])
