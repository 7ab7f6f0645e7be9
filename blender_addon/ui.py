"""3D View > Sidebar > TalkRig. Buttons are drawn plainly: each operator's poll greys it out and says why
(poll.py), so no condition is tested here a second time."""

from __future__ import annotations

import bpy

from . import server_link
from .core import anim
from .core.transcript import drives_lips, language_line, take_line
from .poll import no_character
from .preferences import get_prefs


class _Panel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "TalkRig"


class TALKRIG_PT_main(_Panel, bpy.types.Panel):
    bl_label = "TalkRig"

    def draw(self, context):
        s = context.scene.talkrig
        prefs = get_prefs(context)
        row = self.layout.row(align=True)
        row.label(text=prefs.server_address if prefs else server_link.DEFAULT_ADDRESS,
                  icon="SEQUENCE_COLOR_04" if s.server_ok else "SEQUENCE_COLOR_01")
        row.operator("talkrig.server_check", text="", icon="FILE_REFRESH")
        row = self.layout.row(align=True)
        row.operator("talkrig.server_start", icon="PLAY")
        row.operator("talkrig.server_stop", text="", icon="X")
        if prefs is not None:
            self.layout.operator("preferences.addon_show", text="Preferences", icon="PREFERENCES").module = __package__


class TALKRIG_PT_audio(_Panel, bpy.types.Panel):
    bl_label = "Audio"
    bl_parent_id = "TALKRIG_PT_main"

    def draw(self, context):
        s = context.scene.talkrig
        col = self.layout.column()
        col.prop(s, "audio_source", expand=True)
        if s.audio_source == "FILE":
            col.prop(s, "audio_path", text="")
            col.prop(s, "start_frame")
        else:
            col.prop(s, "strip_name", icon="SOUND")
        col.prop(s, "offset_frames")
        row = col.row(align=True)
        row.prop(s, "transcript", text="", icon="TEXT")
        row.operator("talkrig.transcribe", text="", icon="OUTLINER_OB_SPEAKER")
        if s.transcribing:
            if hasattr(col, "progress"):
                col.progress(factor=s.progress, text=f"{s.status} {s.progress * 100:.0f}%")
            else:
                col.label(text=f"{s.status} {s.progress * 100:.0f}%")
            col.operator("talkrig.cancel", icon="CANCEL")
        elif s.transcript_language:
            icon = "INFO" if drives_lips(s.transcript_language) else "ERROR"
            for i, chunk in enumerate(_wrap(language_line(s.transcript_language), 44)):
                col.label(text=chunk, icon=icon if i == 0 else "BLANK1")
            col.prop(s, "transcript_language")  # editable: clear it (or type en) if the text is English
        col.prop(s, "auto_transcribe")


class TALKRIG_PT_target(_Panel, bpy.types.Panel):
    bl_label = "Target"
    bl_parent_id = "TALKRIG_PT_main"

    def draw(self, context):
        s = context.scene.talkrig
        col = self.layout.column()
        why = no_character(context)  # the same reason the greyed-out buttons give
        if why:
            for i, chunk in enumerate(_wrap(why, 48)):
                col.label(text=chunk, icon="ERROR" if i == 0 else "BLANK1")
        else:
            col.label(text=context.active_object.name, icon="OUTLINER_OB_ARMATURE")
        col.prop(s, "profile_preset")
        col.prop(s, "profile")
        row = col.row(align=True)
        row.operator("talkrig.mapping_report", icon="VIEWZOOM")
        row.operator("talkrig.save_profile", icon="FILE_TICK")
        if not s.report:
            col.label(text="Check mapping shows what will be keyed", icon="INFO")
        else:
            box = col.box()
            for line in s.report.splitlines():
                for chunk in _wrap(line, 48):
                    box.label(text=chunk)


class TALKRIG_PT_style(_Panel, bpy.types.Panel):
    bl_label = "Style"
    bl_parent_id = "TALKRIG_PT_main"

    def draw(self, context):
        s = context.scene.talkrig
        col = self.layout.column()
        col.prop(s, "style_mode", text="")
        if s.style_mode == "PRESET":
            col.prop(s, "style_preset")
        elif s.style_mode == "CSV":
            col.prop(s, "style_csv", text="")
        elif s.style_mode == "ACTION":
            col.prop(s, "style_action", text="")
        for name in ("guidance", "intensity", "head_motion", "blink_rate", "steps"):
            use = f"use_{name}"
            if hasattr(s, use):  # unset by default: the checkbox opts in, else the style's/model's own value
                row = col.row(align=True)
                row.prop(s, use, text="")
                sub = row.row(align=True)
                sub.active = getattr(s, use)
                sub.prop(s, name)
            else:
                col.prop(s, name)
        row = col.row(align=True)
        row.prop(s, "seed")
        row.operator("talkrig.reroll", text="", icon="FILE_REFRESH")


class TALKRIG_PT_generate(_Panel, bpy.types.Panel):
    bl_label = "Generate & Apply"
    bl_parent_id = "TALKRIG_PT_main"

    def draw(self, context):
        s = context.scene.talkrig
        col = self.layout.column()
        if s.running:
            if hasattr(col, "progress"):
                col.progress(factor=s.progress, text=f"{s.status} {s.progress * 100:.0f}%")
            else:
                col.label(text=f"{s.status} {s.progress * 100:.0f}%")
            col.operator("talkrig.cancel", icon="CANCEL")
        else:
            col.operator("talkrig.generate", icon="SPEAKER")
            if s.status:
                col.label(text=s.status)
        line = take_line(_active_take(context) or {})
        for chunk in _wrap(line, 48):
            col.label(text=chunk)
        col.prop(s, "apply_on_generate")
        col.prop(s, "as_nla")
        col.operator("talkrig.apply", icon="KEYINGSET")


class TALKRIG_PT_files(_Panel, bpy.types.Panel):
    bl_label = "Import / Export"
    bl_parent_id = "TALKRIG_PT_main"

    def draw(self, context):
        col = self.layout.column(align=True)
        col.operator("talkrig.import_livelink", icon="IMPORT")
        col.operator("talkrig.export_livelink", icon="EXPORT")
        col.separator()
        col.operator("talkrig.export_fbx", icon="EXPORT")
        col.operator("talkrig.export_gltf", icon="EXPORT")


def _active_take(context: bpy.types.Context) -> bpy.types.Action | None:
    """The TalkRig take playing on the active object (its shape keys first, then the object itself)."""
    ob = context.active_object
    return anim.active_take([ob], ours_only=True) if ob is not None else None


def _wrap(text: str, width: int) -> list[str]:
    out, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return out + ([line] if line else [])


classes = (TALKRIG_PT_main, TALKRIG_PT_audio, TALKRIG_PT_target, TALKRIG_PT_style, TALKRIG_PT_generate,
           TALKRIG_PT_files)
register, unregister = bpy.utils.register_classes_factory(classes)
