"""Live Link Face CSV in and out of a character (via rig_mapping's reader/writer and the profile)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from rig_mapping import formats

from .apply import apply_motion
from .readback import motion_from_character
from .target import Target


def import_livelink_csv(
    path: str | Path,
    target: Target,
    profile: Any | None = None,
    start_frame: int = 1,
    as_nla: bool = False,
    mirror: bool = False,
    fps: float | None = None,
    scene: bpy.types.Scene | None = None,
    action_name: str | None = None,
) -> dict[str, bpy.types.Action]:
    """Read a Live Link Face CSV (columns by header name) and key it onto ``target`` as a new take."""
    read_kw: dict[str, Any] = {}
    if fps is not None:
        read_kw["fps"] = fps
    motion = formats.load_motion(path, **read_kw)
    if mirror:
        motion = motion.mirrored()
    return apply_motion(motion, target, profile=profile, action_name=action_name or Path(path).stem,
                        start_frame=start_frame, as_nla=as_nla, scene=scene)


def export_livelink_csv(
    path: str | Path,
    target: Target,
    profile: Any | None = None,
    frame_start: int | None = None,
    frame_end: int | None = None,
    overwrite: bool = False,
    scene: bpy.types.Scene | None = None,
) -> Path:
    """Write the character's animation (scene range by default) as a Live Link Face CSV at the scene fps."""
    p = Path(bpy.path.abspath(str(path)))
    if p.suffix.lower() != ".csv":
        raise ValueError(f"{p.name}: a Live Link Face file must end in .csv")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} already exists; pass overwrite=True to replace it")
    motion = motion_from_character(target, profile, frame_start, frame_end, scene)
    fps = motion.fps
    if abs(fps - round(fps)) > 1e-6:
        # LLF timecodes count whole frames per second; fractional rates (29.97) are written at the nearest.
        motion = motion.resample(round(fps))
    return formats.save_motion(motion, p, overwrite=overwrite)
