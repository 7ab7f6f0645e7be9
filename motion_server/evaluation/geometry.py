"""Measure ARKit motion on a real face mesh (ICT-FaceKit, 53 ARKit-style shapes) in centimetres.

Curves alone cannot say whether lips touch: 0.3 jawOpen + 0.3 mouthClose is closed, 0.3 jawOpen alone is
not. So metrics drive the ICT face with the 52 ARKit weights and measure vertices. Only a few hundred
selected vertices are ever computed (deltas restricted to them), so a minute of motion costs milliseconds.

The face (``motion_server/assets/ict_face_arkit.npz``): ``neutral`` [V, 3] cm, +Y up, +Z forward (out of
the face), +X the character's left; ``deltas`` [53, V, 3] per shape; ``names`` ICT shape names
(``jawOpen``, ``eyeBlink_L`` ...). Its neutral mouth is closed (lips touch at the midline).
ARKit -> ICT weights: a fixed [52, 53] matrix from rig_mapping's auto-mapping (the profile a user's ICT
rig would get), falling back to the suffix rule in ``arkit_to_ict_matrix`` (the two agree; tested).

Landmarks (vertex indices shipped as constants below; ``derive_landmarks`` recomputes them from the mesh
and a test checks they agree). The rule, from geometry only:

- skin = the largest connected component of the mesh (the rest are teeth, gums, eyeballs).
- the jaw split: skin vertices that ``jawOpen`` moves down by more than 1.6 cm belong to the lower lip /
  jaw, those it moves by less than 1.2 cm to the upper lip (no vertex in the lip band lies between).
- lip band: skin vertices within 0.6 cm (height) of the lips' meeting line (found below), in front of
  z = 8.5 cm.
- inner contour at the midline (|x| < 0.3 cm, in front of the front teeth): upper-lip vertices that lie
  within 0.2 cm of a lower-lip vertex at neutral, and the lower-lip vertices nearest to them. The lip
  gap of a frame is min(y of those upper vertices) - max(y of those lower vertices): the lowest point of
  the upper lip minus the highest point of the lower lip. It is signed (negative when lips press into
  each other) and ~0.06 cm at neutral (touching, at mesh resolution).
- mouth corners: the contact pairs (upper and lower lip vertices within 0.15 cm) with the extreme x.
- chin (pogonion): the most forward midline skin vertex 1.5-3.5 cm below the lip contact line.
- mouth region (lip vertex error): skin vertices inside a box around the lips (corners +0.6 cm in x,
  1.3 cm above and 1.6 cm below the contact line, in front of z = corner z - 1.2 cm).
- upper face (dynamics deviation): skin vertices above the nose base (y > contact line + 3.0 cm) that
  any eye/brow/cheek/nose shape moves by more than 0.05 cm, every 4th by index to keep it small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_NAMES, NUM_CHANNELS

# A FaceMotion, or ARKit weights [T, 52] (or one frame [52]).
MotionLike = FaceMotion | np.ndarray

FACE_PATH = Path(__file__).resolve().parents[1] / "assets" / "ict_face_arkit.npz"

# ARKit channels that drive both sides of a split ICT shape.
_BOTH_SIDES = ("browInnerUp", "cheekPuff")
# Channels whose Left/Right is a direction of motion, not a side of the face: names kept as they are.
_DIRECTIONAL = ("jawLeft", "jawRight", "mouthLeft", "mouthRight")

# Derived by ``derive_landmarks`` (rule in the module docstring); shipped so evaluation does not
# redo the mesh analysis and so a change of face asset is noticed by the test.
UPPER_LIP_MID: tuple[int, ...] = (5531, 5532, 5533, 5534)
LOWER_LIP_MID: tuple[int, ...] = (5517, 5519)
MOUTH_CORNERS: tuple[int, int] = (6423, 5918)  # (character's left +x, right -x)
CHIN: int = 968


def _ict_name(arkit: str) -> list[str]:
    """ICT shape name(s) an ARKit channel drives: ...Left -> ..._L, ...Right -> ..._R."""
    if arkit in _BOTH_SIDES:
        return [arkit + "_L", arkit + "_R"]
    if arkit in _DIRECTIONAL:
        return [arkit]
    if arkit.endswith("Left"):
        return [arkit[:-4] + "_L"]
    if arkit.endswith("Right"):
        return [arkit[:-5] + "_R"]
    return [arkit]


def arkit_to_ict_matrix(ict_names: tuple[str, ...] | list[str]) -> np.ndarray:
    """[52, n_ict] float32 matrix M so ict_weights = arkit_weights @ M.

    Suffix convention (ICT-FaceKit): ``eyeBlinkLeft`` -> ``eyeBlink_L``; ``browInnerUp`` and ``cheekPuff``
    drive both halves; directional ``jawLeft``/``mouthLeft`` keep their names. ARKit channels with no ICT
    shape (``tongueOut``) map to nothing.
    """
    index = {n: i for i, n in enumerate(ict_names)}
    m = np.zeros((NUM_CHANNELS, len(ict_names)), np.float32)
    for a, name in enumerate(ARKIT_NAMES):
        for t in _ict_name(name):
            if t in index:
                m[a, index[t]] = 1.0
    return m


@dataclass(frozen=True)
class IctFace:
    names: tuple[str, ...]
    neutral: np.ndarray  # [V, 3] float32 cm
    deltas: np.ndarray  # [53, V, 3] float16 (kept compact; restricted copies are float32)
    triangles: np.ndarray
    arkit_matrix: np.ndarray  # [52, 53]
    _restricted: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_vertices(self) -> int:
        return int(self.neutral.shape[0])

    def ict_weights(self, arkit_weights: np.ndarray) -> np.ndarray:
        w = np.asarray(arkit_weights, np.float32)
        if w.ndim != 2 or w.shape[1] != NUM_CHANNELS:
            raise ValueError(f"expected ARKit weights [T, {NUM_CHANNELS}], got {list(w.shape)}")
        return w @ self.arkit_matrix

    def vertices(self, arkit_weights: np.ndarray, indices: np.ndarray | list[int] | tuple[int, ...]) -> np.ndarray:
        """Positions [T, len(indices), 3] (cm, head-local) of the selected vertices for each frame."""
        idx = np.asarray(indices, dtype=np.int64)
        key = idx.tobytes()
        d = self._restricted.get(key)
        if d is None:  # float32 deltas of just these vertices, reused across calls
            d = self._restricted[key] = self.deltas[:, idx].astype(np.float32)
        w = self.ict_weights(arkit_weights)
        return self.neutral[idx][None] + np.einsum("tk,ksc->tsc", w, d, optimize=True)


def automap_matrix(ict_names: tuple[str, ...] | list[str]) -> np.ndarray | None:
    """The same [52, n_ict] matrix read off rig_mapping's auto-mapping (what a user's rig would get):
    the profile applied to one-hot frames. None when rig_mapping has no auto-mapping."""
    try:
        from rig_mapping.automap import automap
        from rig_mapping.profile import apply_profile
    except ImportError:
        return None
    profile = automap(list(ict_names)).profile
    one_hot = apply_profile(FaceMotion.from_arrays(np.eye(NUM_CHANNELS, dtype=np.float32)), profile).shapes
    rest = apply_profile(FaceMotion.neutral(1), profile).shapes
    m = np.zeros((NUM_CHANNELS, len(ict_names)), np.float32)
    for j, name in enumerate(ict_names):
        if name in one_hot:
            m[:, j] = one_hot[name] - rest[name][0]
    return m


@lru_cache(maxsize=1)
def load_face(path: str | None = None) -> IctFace:
    """Load the ICT face (the repo copy by default). Cached: every caller shares one instance."""
    p = Path(path) if path else FACE_PATH
    if not p.is_file():
        raise FileNotFoundError(f"face model not found at {p}; it ships in the repository (motion_server/assets)")
    with np.load(p, allow_pickle=False) as d:
        names = tuple(str(n) for n in d["names"])
        face = IctFace(
            names=names,
            neutral=d["neutral"].astype(np.float32),
            deltas=d["deltas"],
            triangles=d["triangles"],
            arkit_matrix=_matrix(names),
        )
    return face


def _matrix(names: tuple[str, ...]) -> np.ndarray:
    m = automap_matrix(names)
    return arkit_to_ict_matrix(names) if m is None else m


# -- landmark derivation ---------------------------------------------------------------------------

def _skin_mask(face: IctFace) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = face.triangles
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    v = face.n_vertices
    adj = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(v, v))
    _, lab = connected_components(adj, directed=False)
    return lab == np.bincount(lab).argmax()


@dataclass(frozen=True)
class Landmarks:
    upper_lip_mid: tuple[int, ...]
    lower_lip_mid: tuple[int, ...]
    corners: tuple[int, int]
    chin: int
    mouth_region: tuple[int, ...]
    upper_face: tuple[int, ...]


def derive_landmarks(face: IctFace) -> Landmarks:
    """Apply the selection rule in the module docstring to the mesh."""
    from scipy.spatial import cKDTree

    n = face.neutral.astype(np.float64)
    jaw = face.deltas[face.names.index("jawOpen")].astype(np.float64)
    skin = _skin_mask(face)
    # Front teeth: the most forward non-skin, non-eye geometry below the nose (teeth + gums).
    teeth_front = float(n[~skin & (n[:, 1] < 0), 2].max())

    upper = skin & (jaw[:, 1] > -1.2)
    lower = skin & (jaw[:, 1] < -1.6)
    # Meeting line height: midline pairs in front of the teeth that touch at neutral.
    front_mid = skin & (np.abs(n[:, 0]) < 0.3) & (n[:, 2] > teeth_front)
    lo_idx = np.where(lower & front_mid)[0]
    up_idx = np.where(upper & front_mid)[0]
    d, j = cKDTree(n[lo_idx]).query(n[up_idx])
    close = d < 0.2
    upper_mid = up_idx[close & (np.abs(n[up_idx, 0]) < 1e-3)]
    lower_mid = np.unique(lo_idx[j[close & (np.abs(n[up_idx, 0]) < 1e-3)]])
    y_line = float((n[upper_mid, 1].min() + n[lower_mid, 1].max()) / 2)

    band = skin & (np.abs(n[:, 1] - y_line) < 0.6) & (n[:, 2] > 8.5)
    bu, bl = np.where(band & upper)[0], np.where(band & lower)[0]
    d, _ = cKDTree(n[bl]).query(n[bu])
    contact = bu[d < 0.15]
    left = int(contact[np.argmax(n[contact, 0])])
    right = int(contact[np.argmin(n[contact, 0])])

    chin_band = skin & (np.abs(n[:, 0]) < 1e-3) & (n[:, 1] < y_line - 1.5) & (n[:, 1] > y_line - 3.5)
    ci = np.where(chin_band)[0]
    chin = int(ci[np.argmax(n[ci, 2])])

    cx, cz = float(n[left, 0]), float(n[left, 2])
    region = skin & (np.abs(n[:, 0]) < cx + 0.6) & (n[:, 1] < y_line + 1.3) & (n[:, 1] > y_line - 1.6) & (
        n[:, 2] > cz - 1.2
    )

    upper_shapes = [i for i, s in enumerate(face.names) if s.startswith(("eye", "brow", "cheek", "nose"))]
    moved = np.zeros(face.n_vertices, bool)
    for s in upper_shapes:
        moved |= np.linalg.norm(face.deltas[s].astype(np.float32), axis=1) > 0.05
    top = np.where(skin & moved & (n[:, 1] > y_line + 3.0))[0][::4]

    return Landmarks(
        upper_lip_mid=tuple(int(i) for i in sorted(upper_mid)),
        lower_lip_mid=tuple(int(i) for i in sorted(lower_mid)),
        corners=(left, right),
        chin=chin,
        mouth_region=tuple(int(i) for i in np.where(region)[0]),
        upper_face=tuple(int(i) for i in top),
    )


@lru_cache(maxsize=1)
def landmarks() -> Landmarks:
    """Landmarks for the shipped face: constants for the point landmarks, region sets derived once."""
    face = load_face()
    derived = derive_landmarks(face)
    return Landmarks(
        upper_lip_mid=UPPER_LIP_MID,
        lower_lip_mid=LOWER_LIP_MID,
        corners=MOUTH_CORNERS,
        chin=CHIN,
        mouth_region=derived.mouth_region,
        upper_face=derived.upper_face,
    )


# -- measurements ----------------------------------------------------------------------------------

def _weights(motion_or_weights: MotionLike) -> np.ndarray:
    w = getattr(motion_or_weights, "weights", motion_or_weights)
    w = np.asarray(w, np.float32)
    if w.ndim == 1:
        w = w[None]
    return w


def lip_gap(motion_or_weights: MotionLike) -> np.ndarray:
    """[T] signed lip opening at the midline, cm: lowest upper-lip point minus highest lower-lip point."""
    face = load_face()
    w = _weights(motion_or_weights)
    up = face.vertices(w, UPPER_LIP_MID)[..., 1].min(axis=1)
    lo = face.vertices(w, LOWER_LIP_MID)[..., 1].max(axis=1)
    return (up - lo).astype(np.float64)


def mouth_width(motion_or_weights: MotionLike) -> np.ndarray:
    """[T] corner-to-corner distance, cm."""
    v = load_face().vertices(_weights(motion_or_weights), MOUTH_CORNERS)
    return np.linalg.norm(v[:, 0] - v[:, 1], axis=1).astype(np.float64)


def jaw_drop(motion_or_weights: MotionLike) -> np.ndarray:
    """[T] chin displacement from the neutral face, cm."""
    face = load_face()
    v = face.vertices(_weights(motion_or_weights), (CHIN,))[:, 0]
    return np.linalg.norm(v - face.neutral[CHIN], axis=1).astype(np.float64)


def mouth_vertices(motion_or_weights: MotionLike) -> np.ndarray:
    """[T, M, 3] positions (cm) of the mouth-region vertices (for lip vertex error)."""
    return load_face().vertices(_weights(motion_or_weights), landmarks().mouth_region)


def upper_face_vertices(motion_or_weights: MotionLike) -> np.ndarray:
    """[T, U, 3] positions (cm) of moving upper-face vertices (for dynamics deviation)."""
    return load_face().vertices(_weights(motion_or_weights), landmarks().upper_face)
