"""Write a FaceMotion onto a character as new Action(s): shape keys on each Key, head/jaw on the armature.

Never overwrites the user's animation: our keys go into a NEW Action (tagged as TalkRig's). A user
Action already assigned is moved, untouched, into an NLA track (or, with ``as_nla``, left active and our
take is added as an NLA strip instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy
import numpy as np

from rig_mapping import rotation

from . import anim, mapping, scene_setup
from .target import Target
from .transcript import take_properties

FACE_GROUP = "TalkRig Face"
USER_TRACK_PREFIX = "[user] "
OUR_TRACK_PREFIX = "TalkRig "


def scene_fps(scene: bpy.types.Scene) -> float:
    return scene.render.fps / scene.render.fps_base


def take_name(motion: Any, audio_path: str | Path | None = None) -> str:
    """An Action name from the audio file the motion came from (or its meta), e.g. 'hello_take'."""
    src = audio_path or motion.meta.get("audio_name") or motion.meta.get("audio_path") or motion.meta.get("source")
    stem = Path(str(src)).stem if src else "TalkRig"
    return f"{stem}"[:60]


def apply_motion(
    motion: Any,
    target: Target,
    profile: Any | None = None,
    action_name: str | None = None,
    start_frame: int = 1,
    as_nla: bool = False,
    scene: bpy.types.Scene | None = None,
    audio_path: str | Path | None = None,
    set_frame_range: bool = True,
    interpolation: str = "LINEAR",
) -> dict[str, bpy.types.Action]:
    """Key ``motion`` (a rig_mapping FaceMotion) onto ``target``; returns {datablock label: Action}.

    The motion is resampled to the scene frame rate (render.fps / fps_base), every channel is keyed on the
    same frames ``start_frame .. start_frame + T - 1``. With ``audio_path`` a sound strip is added to the
    sequencer at ``start_frame`` and the scene plays in audio sync.
    """
    scene = scene or bpy.context.scene
    if not target.meshes and not (target.armature and target.bones):
        raise ValueError(f"target {target.name!r} has nothing to animate (no matching shape keys or bones)")
    fps = scene_fps(scene)
    motion = motion.resample(fps)
    if motion.n_frames == 0:
        raise ValueError("the motion has no frames: nothing to key (was the audio empty?)")
    # rig_mapping fits the profile (or chooses one) for this rig: the same answer map-report gives
    profile = mapping.fitted_profile(target.shape_names, target.bone_names, profile)
    curves = mapping.evaluate(motion, profile, target.shape_names)
    frames = (int(start_frame) + np.arange(motion.n_frames)).astype(np.float32)
    name = action_name or take_name(motion, audio_path)
    meta = {"fps": fps, "start_frame": int(start_frame), "n_frames": motion.n_frames}
    for k in ("seed", "style", "model", "engine", "audio_sha256"):
        if isinstance(motion.meta.get(k), (int, float, str)):
            meta[k] = motion.meta[k]
    # the take keeps the transcript it was made with (given, recognised or none), shown by the panel
    meta.update(take_properties(motion.meta.get("transcript")))

    jobs: list[tuple[bpy.types.ID, list[tuple[str, int, np.ndarray, str]]]] = []
    for key in target.keys:
        items = [
            (kb.path_from_id("value"), 0, curves.shapes[kb.name], FACE_GROUP)
            for kb in key.key_blocks
            if kb.name in curves.shapes
        ]
        if items:
            jobs.append((key, items))
    if target.armature is not None and curves.bones:
        items = []
        for bone_name, euler in curves.bones.items():
            pbone = target.armature.pose.bones.get(bone_name)
            if pbone is not None:
                items.extend(bone_items(pbone, euler, curves.rotation_modes.get(bone_name, "XYZ")))
        if items:
            jobs.append((target.armature, items))
    if not jobs:
        raise ValueError(
            f"none of the mapped channels exist on {target.name!r}: check the mapping report "
            "(TalkRig panel > Target) and pick or edit a profile"
        )

    created: dict[str, bpy.types.Action] = {}
    shared = anim.new_action(name, meta) if anim.HAS_SLOTS else None
    for idblock, items in jobs:
        # Slotted Actions hold every datablock's channels in one clip; legacy ones need one Action each.
        action = shared or anim.new_action(f"{name}_{idblock.name}", meta)
        slot, bag = anim.channels_for(action, idblock)
        for data_path, index, values, group in items:
            fc = anim.new_fcurve(bag, data_path, index, group)
            anim.write_keys(fc, frames, values, interpolation)
        _attach(idblock, action, slot, int(start_frame), as_nla)
        created[f"{idblock.id_type}:{idblock.name}"] = action

    if set_frame_range:
        scene_setup.fit_frame_range(scene, int(start_frame), int(start_frame) + motion.n_frames - 1)
    if audio_path:
        scene_setup.add_sound_strip(scene, audio_path, int(start_frame))
    return created


def _attach(idblock: bpy.types.ID, action: bpy.types.Action, slot: Any, start: int, as_nla: bool) -> None:
    ad = idblock.animation_data or idblock.animation_data_create()
    if as_nla:
        anim.add_nla_strip(idblock, action, slot, start, OUR_TRACK_PREFIX + action.name)
        return
    current = ad.action
    if current is not None and not anim.is_ours(current):
        anim.push_to_nla(idblock, USER_TRACK_PREFIX + current.name)
    anim.assign(idblock, action, slot)


def bone_items(pbone: bpy.types.PoseBone, euler: np.ndarray, order: str = "XYZ") -> list[tuple[str, int, np.ndarray, str]]:
    """F-curve items for one pose bone: ``euler`` [T, 3] radians in ``order`` converted to the bone's own
    rotation mode (the rig is not modified). The conversions are rig_mapping's (numpy, continuous)."""
    e = np.asarray(euler, np.float64)
    mode = pbone.rotation_mode
    if mode in ("QUATERNION", "AXIS_ANGLE"):
        q = rotation.euler_to_quat(e, order)
        if mode == "QUATERNION":
            vals, path = q, pbone.path_from_id("rotation_quaternion")
        else:
            vals, path = rotation.quat_to_axis_angle(q), pbone.path_from_id("rotation_axis_angle")
        return [(path, i, vals[:, i], pbone.name) for i in range(4)]
    vals = rotation.reorder_euler(e, order, mode)
    path = pbone.path_from_id("rotation_euler")
    return [(path, i, vals[:, i], pbone.name) for i in range(3)]


def read_bone_euler(pbone: bpy.types.PoseBone, values: dict[int, np.ndarray], order: str, n: int) -> np.ndarray:
    """Inverse of :func:`bone_items`: sampled rotation channels (array index -> [T]) -> [T, 3] Euler in ``order``."""
    mode = pbone.rotation_mode
    if mode == "QUATERNION":
        q = np.stack([values.get(i, np.full(n, 1.0 if i == 0 else 0.0)) for i in range(4)], axis=1)
        return rotation.quat_to_euler(q, order)
    if mode == "AXIS_ANGLE":
        aa = np.stack([values.get(i, np.zeros(n) if i != 2 else np.ones(n)) for i in range(4)], axis=1)
        return rotation.quat_to_euler(rotation.axis_angle_to_quat(aa), order)
    e = np.stack([values.get(i, np.zeros(n)) for i in range(3)], axis=1)
    return rotation.reorder_euler(e, mode, order)
