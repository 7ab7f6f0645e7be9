"""Rotation conversions for keying bone curves: Euler (any of Blender's six orders) <-> quaternion <->
axis-angle, in numpy, on whole curves at once.

Conventions are Blender's, so the add-on can key the result as is: an Euler order ``"XYZ"`` applies X
first (the matrix is ``Rz @ Ry @ Rx``); quaternions are ``w, x, y, z``; axis-angle is
``angle, x, y, z``. Curves stay continuous: consecutive quaternions keep one hemisphere and Euler
angles take the solution (and 2*pi turn) nearest the previous frame, so interpolating between keys
never spins the long way round.
"""

from __future__ import annotations

import numpy as np

EULER_ORDERS: tuple[str, ...] = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
_AXIS = {"X": 0, "Y": 1, "Z": 2}


def _order(order: str) -> tuple[int, int, int, float]:
    if order not in EULER_ORDERS:
        raise ValueError(f"Euler order must be one of {EULER_ORDERS}, got {order!r}")
    i, j, k = (_AXIS[c] for c in order)
    parity = 1.0 if (j - i) % 3 == 1 else -1.0  # XYZ, YZX, ZXY are even (right-handed) sequences
    return i, j, k, parity


def quat_continuous(q: np.ndarray) -> np.ndarray:
    """``q`` [T, 4] with each quaternion's sign flipped where needed to stay near the previous one."""
    q = np.array(q, np.float64, copy=True)
    if len(q) > 1:
        # sign of the running product of dot-product signs: flipping one frame flips every later comparison
        flips = np.cumprod(np.where(np.einsum("ij,ij->i", q[1:], q[:-1]) < 0, -1.0, 1.0))
        q[1:] *= flips[:, None]
    return q


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = a.T
    bw, bx, by, bz = b.T
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=1)


def euler_to_quat(euler: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """[T, 3] Euler radians (components x, y, z) in ``order`` -> [T, 4] w, x, y, z, sign-continuous."""
    e = np.asarray(euler, np.float64).reshape(-1, 3)
    q = np.zeros((len(e), 4))
    q[:, 0] = 1.0
    _order(order)  # validates the order
    for c in order:
        a = _AXIS[c]
        r = np.zeros((len(e), 4))
        r[:, 0] = np.cos(e[:, a] * 0.5)
        r[:, 1 + a] = np.sin(e[:, a] * 0.5)
        q = _quat_mul(r, q)  # later axes act after earlier ones
    return quat_continuous(q)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """[T, 4] w, x, y, z (normalised here) -> [T, 3, 3] rotation matrices."""
    q = np.asarray(q, np.float64).reshape(-1, 4)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = (q / np.where(n > 0, n, 1.0)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
    ], axis=1)


def matrix_to_euler(m: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """[T, 3, 3] rotation matrices -> [T, 3] Euler radians in ``order``, continuous from frame to frame."""
    i, j, k, s = _order(order)
    m = np.asarray(m, np.float64).reshape(-1, 3, 3)
    cy = np.hypot(m[:, i, i], m[:, j, i])
    # The two Euler triples giving each matrix (middle angle b and pi - b); after frame 0, whichever
    # lies nearer the previous frame once whole turns are removed.
    sols = np.empty((2, len(m), 3))
    for n, sign in enumerate((1.0, -1.0)):
        sols[n, :, i] = np.arctan2(s * sign * m[:, k, j], sign * m[:, k, k])
        sols[n, :, j] = np.arctan2(-s * m[:, k, i], sign * cy)
        sols[n, :, k] = np.arctan2(s * sign * m[:, j, i], sign * m[:, i, i])
    out = np.empty((len(m), 3))
    for t in range(len(m)):
        if t == 0:  # no previous frame: the triple with the smaller angles (Blender's choice too)
            out[0] = sols[int(np.abs(sols[1, 0]).sum() < np.abs(sols[0, 0]).sum()), 0]
            continue
        prev = out[t - 1]
        cands = sols[:, t] + 2 * np.pi * np.round((prev - sols[:, t]) / (2 * np.pi))
        out[t] = cands[int(np.argmin(np.abs(cands - prev).sum(axis=1)))]
    return out


def quat_to_euler(q: np.ndarray, order: str = "XYZ") -> np.ndarray:
    """[T, 4] w, x, y, z -> [T, 3] Euler radians in ``order``, continuous (inverse of :func:`euler_to_quat`)."""
    return matrix_to_euler(quat_to_matrix(q), order)


def reorder_euler(euler: np.ndarray, src: str, dst: str) -> np.ndarray:
    """The same rotations written in another Euler order (continuous)."""
    e = np.asarray(euler, np.float64).reshape(-1, 3)
    return e.copy() if src == dst else quat_to_euler(euler_to_quat(e, src), dst)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """[T, 4] w, x, y, z -> [T, 4] angle, x, y, z (a zero rotation keeps Blender's default Y axis)."""
    q = np.asarray(q, np.float64).reshape(-1, 4)
    n = np.linalg.norm(q, axis=1, keepdims=True)
    q = q / np.where(n > 0, n, 1.0)
    angle = 2.0 * np.arccos(np.clip(q[:, 0], -1.0, 1.0))
    sin_half = np.linalg.norm(q[:, 1:], axis=1)
    axis = np.tile([0.0, 1.0, 0.0], (len(q), 1))
    ok = sin_half > 1e-12
    axis[ok] = q[ok, 1:] / sin_half[ok, None]
    return np.concatenate([angle[:, None], axis], axis=1)


def axis_angle_to_quat(aa: np.ndarray) -> np.ndarray:
    """[T, 4] angle, x, y, z -> [T, 4] w, x, y, z (the axis is normalised; a zero axis gives identity)."""
    aa = np.asarray(aa, np.float64).reshape(-1, 4)
    n = np.linalg.norm(aa[:, 1:], axis=1, keepdims=True)
    axis = np.where(n > 0, aa[:, 1:] / np.where(n > 0, n, 1.0), 0.0)
    half = 0.5 * np.where(n[:, 0] > 0, aa[:, 0], 0.0)
    return np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * axis], axis=1)
