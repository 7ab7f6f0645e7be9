"""Scene-level settings so the take plays in sync: frame range, sound strip, audio-synced playback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bpy


def fit_frame_range(scene: bpy.types.Scene, first: int, last: int) -> None:
    """Make the scene range cover the take (the range only ever grows when the take is inside it)."""
    scene.frame_start = int(first)
    scene.frame_end = max(int(last), int(first))


def _strips(scene: bpy.types.Scene):
    se = scene.sequence_editor or scene.sequence_editor_create()
    # Blender 5.0 renamed Sequence -> Strip; 4.x uses sequences / sequences_all.
    return (se.strips if hasattr(se, "strips") else se.sequences), (
        se.strips_all if hasattr(se, "strips_all") else se.sequences_all
    )


def find_sound_strip(scene: bpy.types.Scene, name: str) -> Any | None:
    if scene.sequence_editor is None:
        return None
    _, all_strips = _strips(scene)
    return next((s for s in all_strips if s.name == name and s.type == "SOUND"), None)


def sound_strips(scene: bpy.types.Scene) -> list:
    if scene.sequence_editor is None:
        return []
    _, all_strips = _strips(scene)
    return [s for s in all_strips if s.type == "SOUND"]


def add_sound_strip(scene: bpy.types.Scene, audio_path: str | Path, frame_start: int) -> Any:
    """Add the audio to the sequencer at ``frame_start`` (reusing an identical strip) and sync playback."""
    path = Path(bpy.path.abspath(str(audio_path)))
    if not path.is_file():
        raise FileNotFoundError(f"audio file not found: {path}")
    top, all_strips = _strips(scene)
    for s in all_strips:
        if s.type == "SOUND" and _same_file(s.sound.filepath, path) and int(s.frame_start) == int(frame_start):
            scene.sync_mode = "AUDIO_SYNC"
            return s
    used = {s.channel for s in all_strips}
    channel = next(c for c in range(1, 129) if c not in used)
    strip = top.new_sound(path.stem, str(path), channel, int(frame_start))
    scene.sync_mode = "AUDIO_SYNC"  # drop frames rather than drift from the sound
    return strip


def _same_file(a: str, b: Path) -> bool:
    try:
        return os.path.samefile(bpy.path.abspath(a), b)
    except OSError:
        return False


def sound_strip_file(strip: Any) -> str:
    return bpy.path.abspath(strip.sound.filepath)
