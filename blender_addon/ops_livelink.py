"""Live Link Face CSV in and out: import a recording onto the selected character as a take, export the
character's animation (scene range) as a recording."""

from __future__ import annotations

import warnings

import bpy

from . import jobs
from .core import livelink
from .core.target import TargetError, find_target
from .ops_export import ExportOperator
from .poll import allowed, no_character

_OK = {"FINISHED"}
_CANCELLED = {"CANCELLED"}


class TALKRIG_OT_import_livelink(bpy.types.Operator):
    """Import a Live Link Face CSV onto the selected character as a new take"""

    bl_idname = "talkrig.import_livelink"
    bl_label = "Import Live Link CSV"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")
    filter_glob: bpy.props.StringProperty(default="*.csv", options={"HIDDEN"})
    mirror: bpy.props.BoolProperty(name="Mirror left/right", default=False)

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, no_character)

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.talkrig
        try:
            target = find_target(context.active_object)
            jobs.show_mapping(settings, target)
            with warnings.catch_warnings(record=True) as notes:  # e.g. long tracking-lost gaps in the take
                warnings.simplefilter("always")
                created = livelink.import_livelink_csv(
                    bpy.path.abspath(self.filepath), target, profile=jobs.profile_for(settings),
                    start_frame=settings.start_frame + settings.offset_frames, as_nla=settings.as_nla,
                    mirror=self.mirror, scene=context.scene)
        except (TargetError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        for note in notes:
            self.report({"WARNING"}, str(note.message))
        self.report({"INFO"}, f"Imported into {', '.join(sorted({a.name for a in created.values()}))}")
        return _OK


class TALKRIG_OT_export_livelink(ExportOperator, bpy.types.Operator):
    """Write the selected character's animation (scene range) as a Live Link Face CSV"""

    bl_idname = "talkrig.export_livelink"
    bl_label = "Export Live Link CSV"
    suffix = ".csv"

    def write(self, context, path, target):
        return livelink.export_livelink_csv(path, target, profile=jobs.profile_for(context.scene.talkrig),
                                            overwrite=self.overwrite, scene=context.scene)


classes = (TALKRIG_OT_import_livelink, TALKRIG_OT_export_livelink)
register, unregister = bpy.utils.register_classes_factory(classes)
