"""The 52 ARKit blendshape channels in Apple's documented order (ARFaceAnchor.BlendShapeLocation).

Order: left eye (7), right eye (7), jaw + mouth (27), brows/cheeks/nose (10), tongue (1).
Names are Apple's camelCase. Every array in TalkRig with a 52-wide axis uses this order.
"""

from __future__ import annotations

ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft",
    "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight",
    "jawForward", "jawLeft", "jawRight", "jawOpen",
    "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthUpperUpLeft", "mouthUpperUpRight",
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight",
    "noseSneerLeft", "noseSneerRight",
    "tongueOut",
)  # fmt: skip

NUM_CHANNELS = len(ARKIT_NAMES)
assert NUM_CHANNELS == 52

ARKIT_INDEX: dict[str, int] = {n: i for i, n in enumerate(ARKIT_NAMES)}


def _group_of(name: str) -> str:
    for prefix, group in (("eye", "eyes"), ("brow", "brows"), ("jaw", "jaw"), ("mouth", "mouth"),
                          ("cheek", "cheeks"), ("nose", "nose"), ("tongue", "tongue")):
        if name.startswith(prefix):
            return group
    raise ValueError(name)


GROUP_NAMES: tuple[str, ...] = ("eyes", "brows", "jaw", "mouth", "cheeks", "nose", "tongue")
GROUPS: dict[str, tuple[str, ...]] = {
    g: tuple(n for n in ARKIT_NAMES if _group_of(n) == g) for g in GROUP_NAMES
}
GROUP_INDICES: dict[str, tuple[int, ...]] = {
    g: tuple(ARKIT_INDEX[n] for n in names) for g, names in GROUPS.items()
}


def _mirror_name(name: str) -> str:
    """Left<->Right counterpart; unsided channels and jaw/mouth Left/Right swap too (mouthLeft<->mouthRight)."""
    if name.endswith("Left"):
        return name[:-4] + "Right"
    if name.endswith("Right"):
        return name[:-5] + "Left"
    return name


# (left, right) pairs, e.g. ("eyeBlinkLeft", "eyeBlinkRight"); jawLeft/jawRight and mouthLeft/mouthRight
# are directional channels and are included: mirroring a face swaps them as well.
LR_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (n, _mirror_name(n)) for n in ARKIT_NAMES if n.endswith("Left")
)
MIRROR_INDEX: tuple[int, ...] = tuple(ARKIT_INDEX[_mirror_name(n)] for n in ARKIT_NAMES)

# Eye-gaze channels swap in/out meaning under mirroring only through the name swap above
# (eyeLookInLeft <-> eyeLookInRight), which is correct: "in" stays "towards the nose".

HEAD_CHANNELS: tuple[str, ...] = ("pitch", "yaw", "roll", "x", "y", "z")
"""Head pose columns. Rotations in radians, head-local, right-handed, Y up, Z towards the viewer
(the character's forward), X to the character's left:
  pitch = rotation about +X (positive: nod down/chin towards chest),
  yaw   = rotation about +Y (positive: turn to the character's left),
  roll  = rotation about +Z (positive: tilt towards the character's right shoulder).
Translation x/y/z in metres in the same frame, relative to the rest pose."""

MOUTH_CHANNELS: tuple[str, ...] = GROUPS["jaw"] + GROUPS["mouth"]


def mirror_name(name: str) -> str:
    """Public form of the left/right swap used by mirroring."""
    return _mirror_name(name)
