"""Steps shared by the operators and the headless runner: audio choice, generate options, motion files."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import bpy

from ._deps import rig
from .core import scene_setup
from .core.apply import scene_fps
from .core.target import Target
from .core.transcript import sidecar_transcript, withheld_transcript


class JobError(RuntimeError):
    """A step of a TalkRig job cannot run; the message says what to change."""


def resolve_audio(settings: Any, scene: bpy.types.Scene) -> tuple[Path, int]:
    """(audio file, first frame of the take) from the panel settings."""
    if settings.audio_source == "STRIP":
        strip = scene_setup.find_sound_strip(scene, settings.strip_name)
        if strip is None:
            raise JobError(f"no sound strip named {settings.strip_name!r} in the sequencer: pick one in the "
                           "TalkRig panel (Audio > Sound strip) or switch Audio to File")
        return Path(scene_setup.sound_strip_file(strip)), int(strip.frame_start) + int(settings.offset_frames)
    if not settings.audio_path:
        raise JobError("no audio chosen: set Audio file in the TalkRig panel (wav, flac, mp3, ogg)")
    p = Path(bpy.path.abspath(settings.audio_path))
    if not p.is_file():
        raise JobError(f"audio file not found: {p}")
    return p, int(settings.start_frame) + int(settings.offset_frames)


def transcript_for(settings: Any) -> str | None:
    """The panel's transcript, else ``<audio stem>.txt`` beside an audio file (the CLI's convention)."""
    text = settings.transcript.strip()
    if text:
        return text
    if settings.audio_source == "FILE" and settings.audio_path:
        try:
            return sidecar_transcript(Path(bpy.path.abspath(settings.audio_path)))
        except ValueError as exc:
            raise JobError(f"{exc}; fix it or type the transcript in the panel") from None
    return None


def panel_transcript_withheld(settings: Any) -> dict[str, Any] | None:
    """The take's transcript info when the panel's text is in a language without a phone aligner (it is
    then not sent: aligned as English it would close the lips in the wrong places); else None."""
    return withheld_transcript(settings.transcript, settings.transcript_language)


def options_from_settings(settings: Any, scene: bpy.types.Scene, target: Target | None = None) -> dict[str, Any]:
    """GenerateOptions as a dict (the client sends it as is), plus ``style_reference`` when one is chosen."""
    opts: dict[str, Any] = {
        "intensity": float(settings.intensity),
        "head_motion": float(settings.head_motion),
        "seed": int(settings.seed),
        "fps": scene_fps(scene),
    }
    # options unset by default are sent only when their toggle is on: off, the server applies the
    # model's own steps/guidance and the style's own blink rate; on, every value (0 blinks too) is meant
    if settings.use_guidance:
        opts["guidance"] = float(settings.guidance)
    if settings.use_steps:
        opts["steps"] = int(settings.steps)
    if settings.use_blink_rate:
        opts["blink_rate"] = float(settings.blink_rate)
    text = transcript_for(settings)
    if panel_transcript_withheld(settings) is not None:
        opts["transcribe"] = False  # its language is known to have no aligner: recognising again finds the same
    elif text:
        opts["transcript"] = text
    if not settings.auto_transcribe:
        opts["transcribe"] = False
    mode = settings.style_mode
    if mode == "PRESET":
        opts["style"] = settings.style_preset.strip() or None
    elif mode == "PREDICTED":
        opts["style"] = "predicted"
    elif mode == "CSV":
        p = Path(bpy.path.abspath(settings.style_csv))
        if not p.is_file():
            raise JobError(f"reference CSV not found: {p} (Style > Reference CSV)")
        opts["style_reference"] = rig("formats").load_motion(p)
    elif mode == "ACTION":
        if settings.style_action is None:
            raise JobError("no reference take chosen (Style > TalkRig take)")
        if target is None:
            raise JobError("a TalkRig take as style reference needs the target character selected")
        opts["style_reference"] = motion_from_action(settings.style_action, target, scene)
    return {k: v for k, v in opts.items() if v is not None}


def motion_from_action(action: bpy.types.Action, target: Target, scene: bpy.types.Scene) -> Any:
    """Read a (not necessarily assigned) Action back into a FaceMotion by assigning it for the read only."""
    from .core import anim
    from .core.readback import motion_from_character

    saved = []
    ids = [*target.keys, *([target.armature] if target.armature else [])]
    try:
        for idb in ids:
            ad = idb.animation_data or idb.animation_data_create()
            saved.append((idb, ad.action, ad.action_slot if anim.HAS_SLOTS else None))
            slot = None
            if anim.HAS_SLOTS:
                slot = next((s for s in action.slots if s.target_id_type == idb.id_type and s.name_display == idb.name),
                            None)
                if slot is None:
                    ad.action = None
                    continue
            anim.assign(idb, action, slot)
        a, b = (int(v) for v in action.frame_range)
        return motion_from_character(target, None, a, b, scene)
    finally:
        for idb, act, slot in saved:
            idb.animation_data.action = act
            if anim.HAS_SLOTS and act is not None and slot is not None:
                idb.animation_data.action_slot = slot


def motion_dir() -> Path:
    """Where generated motions are kept: //talkrig/ next to a saved .blend, else the temp folder."""
    if bpy.data.filepath:
        d = Path(bpy.path.abspath("//talkrig"))
    else:
        d = Path(tempfile.gettempdir()) / "talkrig"
    d.mkdir(parents=True, exist_ok=True)
    return d


def save_generated(motion: Any, take: str) -> Path:
    """Keep the generated motion as .npz (lossless, with meta) so Apply/re-apply never needs the server."""
    d = motion_dir()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in take) or "take"
    p = d / f"{safe}.npz"
    i = 1
    while p.exists():
        p = d / f"{safe}.{i:03d}.npz"
        i += 1
    return rig("formats").save_motion(motion, p)
