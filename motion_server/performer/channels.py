"""Channel-name helpers shared by the performer's data files (visemes, emotion presets)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rig_mapping.arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_CHANNELS

JAW_INDICES: tuple[int, ...] = tuple(i for i, n in enumerate(ARKIT_NAMES) if n.startswith("jaw"))
JAW_MASK = np.zeros(NUM_CHANNELS, bool)
JAW_MASK[list(JAW_INDICES)] = True


def expand_name(name: str) -> tuple[str, ...]:
    """``mouthPress`` -> (mouthPressLeft, mouthPressRight); an exact ARKit name -> itself."""
    if name in ARKIT_INDEX:
        return (name,)
    pair = (name + "Left", name + "Right")
    if all(p in ARKIT_INDEX for p in pair):
        return pair
    raise ValueError(
        f"unknown ARKit channel {name!r} in performer data; use an ARKit name (e.g. jawOpen) or a "
        "two-sided stem (e.g. mouthSmile for mouthSmileLeft + mouthSmileRight)"
    )


def channel_vector(values: Mapping[str, float]) -> np.ndarray:
    """A [52] float32 vector from {channel or two-sided stem: value}."""
    v = np.zeros(NUM_CHANNELS, np.float32)
    for name, val in values.items():
        for n in expand_name(name):
            v[ARKIT_INDEX[n]] = float(val)
    return v


def idx(name: str) -> int:
    return ARKIT_INDEX[name]


def idxs(*names: str) -> list[int]:
    """Indices of channels named exactly or by two-sided stems."""
    return [ARKIT_INDEX[n] for name in names for n in expand_name(name)]
