"""ICT-face measurements: lip gap, mouth width, jaw drop behave as a viewer would see them."""

from __future__ import annotations

import numpy as np

from motion_server.evaluation import geometry as g
from rig_mapping.arkit import ARKIT_INDEX


def _ramp(channels: list[str], n: int = 11, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
    w = np.zeros((n, 52), np.float32)
    for c in channels:
        w[:, ARKIT_INDEX[c]] = np.linspace(0, 1, n)
    for c, v in (extra or {}).items():
        w[:, ARKIT_INDEX[c]] = v
    return w


def test_shipped_landmarks_match_the_rule():
    lm = g.derive_landmarks(g.load_face())
    assert lm.upper_lip_mid == g.UPPER_LIP_MID
    assert lm.lower_lip_mid == g.LOWER_LIP_MID
    assert lm.corners == g.MOUTH_CORNERS
    assert lm.chin == g.CHIN
    assert 200 < len(lm.mouth_region) < 5000 and 200 < len(lm.upper_face) < 5000


def test_mapping_covers_every_ict_shape_once():
    face = g.load_face()
    m = face.arkit_matrix
    assert m.shape == (52, 53)
    assert (m.sum(axis=0) == 1).all()  # every ICT shape has exactly one driver
    assert m[ARKIT_INDEX["tongueOut"]].sum() == 0
    assert m[ARKIT_INDEX["browInnerUp"]].sum() == 2
    left = face.names.index("eyeBlink_L")
    assert m[ARKIT_INDEX["eyeBlinkLeft"], left] == 1
    assert m[ARKIT_INDEX["jawLeft"], face.names.index("jawLeft")] == 1
    # rig_mapping's auto-mapping (used when present) and the suffix rule agree on the ICT face.
    np.testing.assert_array_equal(m, g.arkit_to_ict_matrix(face.names))


def test_neutral_lips_closed_and_gap_grows_with_jaw_open():
    w = _ramp(["jawOpen"])
    gap = g.lip_gap(w)
    assert abs(gap[0]) < 0.1  # ICT neutral mouth is closed
    assert np.all(np.diff(gap) > 0)
    assert gap[-1] > 2.5  # a fully open jaw parts the lips by centimetres
    drop = g.jaw_drop(w)
    assert drop[0] == 0 and np.all(np.diff(drop) > 0) and drop[-1] > 3


def test_mouth_close_cancels_jaw_open():
    ramp = np.linspace(0, 1, 11)
    gap = g.lip_gap(_ramp(["jawOpen", "mouthClose"]))
    assert gap.max() < 0.1  # lips stay shut (they may press in: negative)
    half = g.lip_gap(_ramp(["jawOpen"], extra={"mouthClose": 0.5 * ramp}))
    assert half[-1] > 1.0  # half-closing leaves the mouth open


def test_smile_widens_mouth_and_pucker_narrows():
    width_smile = g.mouth_width(_ramp(["mouthSmileLeft", "mouthSmileRight"]))
    assert 4 < width_smile[0] < 5.5 and np.all(np.diff(width_smile) > 0) and width_smile[-1] > width_smile[0] + 1
    assert g.mouth_width(_ramp(["mouthPucker"]))[-1] < width_smile[0] - 0.5


def test_mouth_vertices_follow_the_motion():
    w = _ramp(["jawOpen"], n=3)
    v = g.mouth_vertices(w)
    assert v.shape[0] == 3 and v.shape[2] == 3
    assert np.abs(v[0] - v[1]).max() > 0.5  # jaw opening moves the mouth region
