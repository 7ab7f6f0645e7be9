"""Steps shared by the operators and the headless runner: audio choice, generate options, the mapping
profile and report, motion files, what happens to a generated motion."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import bpy

from rig_mapping import formats

from .core import mapping, scene_setup
from .core.apply import apply_motion, scene_fps
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


def profile_for(settings: Any) -> Any | None:
    """The panel's mapping profile: None (automatic), a shipped preset's name, or a profile file."""
    s = settings.profile.strip()
    if not s:
        return None
    return mapping.load_profile(bpy.path.abspath(s) if s.startswith("//") or "/" in s or "\\" in s else s)


def show_mapping(settings: Any, target: Target) -> Any:
    """Put the mapping report (what matches, what does not) into the panel; returns the report.
    Called by Check mapping and before every operator that keys, so the panel always shows what a take
    is about to be written onto (while a generate job runs, before anything is written)."""
    rep = mapping.report(target.shape_names, target.bone_names, profile_for(settings))
    settings.report = "\n".join([target.describe(), *rep.lines()])
    return rep


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
        opts["style_reference"] = formats.load_motion(p)
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
    return formats.save_motion(motion, p)


def keep_generated(settings: Any, scene: bpy.types.Scene, motion: Any, audio: Path, start: int, target: Target,
                   withheld: dict[str, Any] | None = None) -> str:
    """Keep a generated motion as .npz and, if the panel says so, key it onto ``target`` as a new take
    named after the audio; returns what was done. ``withheld``: the panel's transcript that was not sent
    (no aligner for its language), kept as the take's transcript instead of the server's account."""
    take = Path(audio).stem
    meta = {**motion.meta, "audio_name": Path(audio).name}
    if withheld is not None:
        meta["transcript"] = withheld
    motion = motion.replace(meta=meta)
    path = save_generated(motion, take)
    settings.last_motion = str(path)
    if not settings.apply_on_generate:
        return f"Generated {motion.n_frames} frames, saved to {path} (press Apply to key it)"
    created = apply_motion(motion, target, profile=profile_for(settings), action_name=take, start_frame=start,
                           as_nla=settings.as_nla, scene=scene, audio_path=audio)
    return f"Keyed {motion.n_frames} frames into {', '.join(sorted({a.name for a in created.values()}))}"
