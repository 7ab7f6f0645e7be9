"""Read a character's animated shape keys and head bones back into a FaceMotion (apply's inverse)."""

from __future__ import annotations

import re
from typing import Any

import bpy
import numpy as np

from . import anim, mapping
from .apply import read_bone_euler, scene_fps
from .target import Target

_KB_PATH = re.compile(r'^key_blocks\["(.+)"\]\.value$')
_BONE_PATH = re.compile(r'^pose\.bones\["(.+)"\]\.(rotation_quaternion|rotation_euler|rotation_axis_angle)$')


def _unescape(name: str) -> str:
    return name.replace('\\"', '"').replace("\\\\", "\\")


def read_curves(target: Target, frames: np.ndarray) -> mapping.Curves:
    """Shape-key values and bone rotations at ``frames`` from the assigned Actions' F-curves.

    Shape keys without a curve contribute their current (static) value. Bones come back as Euler angles
    in their own rotation mode's terms and are converted per profile by :func:`motion_from_character`.
    """
    shapes: dict[str, np.ndarray] = {}
    for key in target.keys:
        animated = {}
        for fc in anim.fcurves_of(key):
            m = _KB_PATH.match(fc.data_path)
            if m:
                animated[_unescape(m.group(1))] = fc
        for kb in key.key_blocks:
            if kb == key.reference_key or kb.name in shapes:
                continue
            fc = animated.get(kb.name)
            shapes[kb.name] = anim.sample(fc, frames) if fc is not None else np.full(len(frames), kb.value)
    bone_raw: dict[str, dict[int, np.ndarray]] = {}
    if target.armature is not None:
        for fc in anim.fcurves_of(target.armature):
            m = _BONE_PATH.match(fc.data_path)
            if m:
                bone_raw.setdefault(_unescape(m.group(1)), {})[fc.array_index] = anim.sample(fc, frames)
    return mapping.Curves(shapes=shapes, bones={b: v for b, v in bone_raw.items()})  # type: ignore[arg-type]


def motion_from_character(
    target: Target,
    profile: Any | None = None,
    frame_start: int | None = None,
    frame_end: int | None = None,
    scene: bpy.types.Scene | None = None,
) -> Any:
    """The FaceMotion the character's current animation represents, at the scene frame rate.

    Frame range defaults to the scene's. The mapping profile (default: automatic) is inverted by least
    squares, so fan-out targets (``browInnerUp`` -> ``browInnerUp_L`` + ``_R``) come back as one channel.
    """
    scene = scene or bpy.context.scene
    a = scene.frame_start if frame_start is None else int(frame_start)
    b = scene.frame_end if frame_end is None else int(frame_end)
    if b < a:
        raise ValueError(f"frame range {a}..{b} is empty; frame_end must be >= frame_start")
    frames = np.arange(a, b + 1, dtype=np.float64)
    profile = mapping.fitted_profile(target.shape_names, target.bone_names, profile)
    raw = read_curves(target, frames)
    modes = {bt.name: bt.rotation_mode for bt in profile.bones}
    bones = {}
    for bone, chans in raw.bones.items():
        pbone = target.armature.pose.bones.get(bone) if target.armature else None
        if pbone is not None and bone in modes:
            bones[bone] = read_bone_euler(pbone, chans, modes[bone], len(frames))
    curves = mapping.Curves(shapes=raw.shapes, bones=bones, rotation_modes=modes)
    motion = mapping.invert(curves, profile, scene_fps(scene))
    return motion.replace(meta={"source": "blender", "frame_start": a, "frame_end": b, "character": target.name})
