"""The character's mapping: Check mapping (what would be keyed, nothing written) and Save profile (the
mapping as an editable file that becomes the active profile)."""

from __future__ import annotations

import bpy

from . import jobs
from .core import export, mapping
from .core.target import TargetError, find_target
from .job_modal import prefs_values
from .poll import allowed, no_character

_OK = {"FINISHED"}
_CANCELLED = {"CANCELLED"}


class TALKRIG_OT_mapping_report(bpy.types.Operator):
    """Show which ARKit channels map onto the selected character (nothing is written)"""

    bl_idname = "talkrig.mapping_report"
    bl_label = "Check mapping"

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, no_character)

    def execute(self, context):
        settings = context.scene.talkrig
        try:
            report = jobs.show_mapping(settings, find_target(context.active_object))
        except (TargetError, ValueError, FileNotFoundError) as e:  # e.g. a broken profile file
            settings.report = str(e)
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self.report({"INFO"}, report.summary())
        return _OK


class TALKRIG_OT_save_profile(bpy.types.Operator):
    """Save the mapping profile used for the selected character to a file you can edit"""

    bl_idname = "talkrig.save_profile"
    bl_label = "Save profile"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")
    filter_glob: bpy.props.StringProperty(default="*.toml;*.json", options={"HIDDEN"})
    overwrite: bpy.props.BoolProperty(name="Overwrite", default=False)

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, no_character)

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = str(export.default_export_path(".toml", "profile", prefs_values(context)["export_dir"] or None))
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.talkrig
        try:
            target = find_target(context.active_object)
            prof = jobs.profile_for(settings) or mapping.auto_profile(target.shape_names, target.bone_names)
            path = mapping.save_profile(prof, bpy.path.abspath(self.filepath), overwrite=self.overwrite)
        except (TargetError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        settings.profile_preset = "FILE"
        settings.profile = str(path)
        self.report({"INFO"}, f"Profile saved to {path}; it is now the active profile (edit it, then Check mapping)")
        return _OK


classes = (TALKRIG_OT_mapping_report, TALKRIG_OT_save_profile)
register, unregister = bpy.utils.register_classes_factory(classes)
