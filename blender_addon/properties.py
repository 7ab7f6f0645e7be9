"""Per-scene TalkRig settings and job state (scene.talkrig)."""

from __future__ import annotations

import bpy

# the one table of generation options (limits, defaults, meanings)
from motion_server import options as gen_options
from rig_mapping import profile as rig_profile

from . import server_link
from .core import scene_setup

_INT_MAX = 2**31 - 1  # Blender's IntProperty is 32-bit; the seed's wider range is reached from the CLI/API


def _option_prop(name: str):
    """A panel property for a generation option, built from the option table: hard limits, slider limit,
    tooltip; its default is the table's, or for an option that is unset by default (None) the value the
    panel shows once the user opts in with the option's ``use_<name>`` toggle."""
    opt = gen_options.option(name)
    kw = {"name": opt.label or name, "description": opt.help(),
          "default": opt.default if opt.default is not None else opt.ui_value}
    if opt.range is not None:
        lo, hi = opt.range
        if opt.kind == "int":
            kw.update(min=int(lo), max=int(min(hi, _INT_MAX)))
        else:
            kw.update(min=float(lo), max=float(hi))
    if opt.soft_max is not None:
        kw["soft_max"] = opt.soft_max
    return (bpy.props.IntProperty if opt.kind == "int" else bpy.props.FloatProperty)(**kw)


def _use_prop(name: str):
    """The toggle that says whether the user chose a value for an option that is unset (None) by default;
    off, the option is not sent and its ``unset`` meaning applies (the style's own blink rate, the
    model's steps). A toggle, not a 0 sentinel: for blink rate 0 is a real value (no blinks)."""
    opt = gen_options.option(name)
    return bpy.props.BoolProperty(
        name=f"Set {opt.label or name}", default=False,
        description=f"On: use the value set here. Off: {opt.unset}")


def _strip_search(self, context, edit_text):
    return [s.name for s in scene_setup.sound_strips(context.scene) if edit_text.lower() in s.name.lower()]


def _style_search(self, context, edit_text):
    # presets of the engine the panel last connected to; any other name can still be typed
    return [n for n in server_link.known_styles() if edit_text.lower() in n.lower()]


def _is_our_action(self, action):
    return bool(action.get("talkrig", False))


_PRESET_ITEMS: list[tuple[str, str, str]] = []  # kept alive: Blender does not copy dynamic enum strings


def _profile_presets(self, context):
    if not _PRESET_ITEMS:
        _PRESET_ITEMS.append(("AUTO", "Automatic", "Match the rig's shape keys and bones by name"))
        for name in rig_profile.list_presets():
            _PRESET_ITEMS.append((name, name, f"The shipped '{name}' mapping profile"))
        _PRESET_ITEMS.append(("FILE", "File...", "A .toml/.json profile file (e.g. one saved with Save profile)"))
    return _PRESET_ITEMS


def _set_profile_from_preset(self, context):
    # Picking a preset fills the one field the operators read; "File..." leaves the path to the user.
    if self.profile_preset == "AUTO":
        self.profile = ""
    elif self.profile_preset != "FILE":
        self.profile = self.profile_preset


class TALKRIG_SceneSettings(bpy.types.PropertyGroup):
    # -- audio
    audio_source: bpy.props.EnumProperty(
        name="Audio", items=[("FILE", "File", "An audio file on disk"),
                             ("STRIP", "Sound strip", "A sound strip already in the sequencer")],
        default="FILE",
    )
    audio_path: bpy.props.StringProperty(name="Audio file", subtype="FILE_PATH", default="")
    strip_name: bpy.props.StringProperty(name="Sound strip", default="", search=_strip_search)
    transcript: bpy.props.StringProperty(
        name="Transcript", default="",
        description="What is said (optional). Aligned to the audio for exact lip closures on /p b m/. "
                    "Empty: a .txt of the same name beside the audio file, if any; else the server recognises "
                    "one (Auto-transcribe). Transcribe fills it with the recognised text to correct")
    transcript_language: bpy.props.StringProperty(
        name="Language", default="",
        description="Language of the Transcript (ISO code, set by Transcribe). Only English is aligned to "
                    "phones: text in another language is kept but not sent. Clear it, or type en, if the text "
                    "is English")
    auto_transcribe: bpy.props.BoolProperty(
        name="Auto-transcribe", default=True,
        description="With no transcript, let the server recognise one (Whisper) and, for English, use it for "
                    "the lip closures. Off: the audio alone drives the lips")
    start_frame: bpy.props.IntProperty(name="Start frame", default=1, description="First frame of the take")
    offset_frames: bpy.props.IntProperty(
        name="Offset", default=0, description="Shift the take by this many frames against the audio")
    # -- target
    profile: bpy.props.StringProperty(
        name="Profile", default="", subtype="FILE_PATH",
        description="Mapping profile: empty = automatic, a preset name (arkit, suffix_lr, ...) or a .toml/.json file",
    )
    profile_preset: bpy.props.EnumProperty(
        name="Mapping", items=_profile_presets, update=_set_profile_from_preset,
        description="Automatic mapping, a shipped profile, or a profile file you saved and edited",
    )
    report: bpy.props.StringProperty(name="Mapping report", default="")
    # -- style
    style_mode: bpy.props.EnumProperty(
        name="Style", default="PRESET",
        items=[("PRESET", "Preset", "A named speaking style"),
               ("CSV", "Reference CSV", "A Live Link Face recording as the style reference"),
               ("ACTION", "TalkRig take", "An existing TalkRig Action as the style reference"),
               ("PREDICTED", "Predicted", "Predict the style from the audio")],
    )
    style_preset: bpy.props.StringProperty(
        name="Preset", default="neutral", search=_style_search, search_options={"SUGGESTION", "SORT"},
        description="A style preset of the server's engine (suggestions appear after Connect)")
    style_csv: bpy.props.StringProperty(name="Reference CSV", subtype="FILE_PATH", default="")
    style_action: bpy.props.PointerProperty(name="Reference take", type=bpy.types.Action, poll=_is_our_action)
    # generation options: limits, defaults and tooltips from the option table (motion_server.options)
    use_guidance: _use_prop("guidance")
    guidance: _option_prop("guidance")
    intensity: _option_prop("intensity")
    head_motion: _option_prop("head_motion")
    use_blink_rate: _use_prop("blink_rate")
    blink_rate: _option_prop("blink_rate")
    seed: _option_prop("seed")
    use_steps: _use_prop("steps")
    steps: _option_prop("steps")
    # -- apply
    as_nla: bpy.props.BoolProperty(
        name="Add as NLA strip", default=False,
        description="Add the take as an NLA strip and leave the active Action as it is")
    apply_on_generate: bpy.props.BoolProperty(name="Apply when done", default=True)
    last_motion: bpy.props.StringProperty(name="Last motion", subtype="FILE_PATH", default="")
    # -- job state (drawn by the panel; written by timers/modals, never in draw())
    running: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})
    transcribing: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})
    progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR", options={"SKIP_SAVE"})
    status: bpy.props.StringProperty(default="", options={"SKIP_SAVE"})
    server_ok: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})


def register() -> None:
    bpy.utils.register_class(TALKRIG_SceneSettings)
    bpy.types.Scene.talkrig = bpy.props.PointerProperty(type=TALKRIG_SceneSettings)


def unregister() -> None:
    del bpy.types.Scene.talkrig
    bpy.utils.unregister_class(TALKRIG_SceneSettings)
