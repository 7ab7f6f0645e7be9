"""Export the character with its take: FBX and glTF (and the base every TalkRig export operator shares:
a file chooser that proposes a name after the .blend and the take, never overwriting unless asked)."""

from __future__ import annotations

from pathlib import Path

import bpy

from .core import anim, export
from .core.target import Target, TargetError, find_target
from .job_modal import prefs_values
from .poll import allowed, nothing_to_export

_OK = {"FINISHED"}
_CANCELLED = {"CANCELLED"}


class ExportOperator:
    """Mixin for a ``bpy.types.Operator`` (listed before it) that writes the selected character's animation
    to one file: set ``suffix`` and ``write(context, path, target) -> Path``."""

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")
    overwrite: bpy.props.BoolProperty(name="Overwrite", default=False)
    suffix = ""

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, nothing_to_export)

    def _path(self, context: bpy.types.Context) -> str:
        """The chosen file, or next to the .blend (or in the preferences' export folder) named after the take."""
        if self.filepath:
            return bpy.path.abspath(self.filepath)
        take = anim.active_take(find_target(context.active_object).objects)
        folder = prefs_values(context)["export_dir"] or None
        return str(export.default_export_path(self.suffix, take.name if take else None, folder))

    def invoke(self, context, event):
        self.filepath = self._path(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def write(self, context: bpy.types.Context, path: str, target: Target) -> Path:
        raise NotImplementedError

    def execute(self, context):
        try:
            path = self.write(context, self._path(context), find_target(context.active_object))
        except (TargetError, export.ExportError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self.report({"INFO"}, f"Wrote {path}")
        return _OK


class TALKRIG_OT_export_fbx(ExportOperator, bpy.types.Operator):
    """Export the character with its shape-key and head animation as FBX (one baked take)"""

    bl_idname = "talkrig.export_fbx"
    bl_label = "Export FBX"
    suffix = ".fbx"

    def write(self, context, path, target):
        return export.export_fbx(path, target.objects, overwrite=self.overwrite)


class TALKRIG_OT_export_gltf(ExportOperator, bpy.types.Operator):
    """Export the character with its morph-target and head animation as glTF binary (.glb)"""

    bl_idname = "talkrig.export_gltf"
    bl_label = "Export glTF"
    suffix = ".glb"

    def write(self, context, path, target):
        return export.export_gltf(path, target.objects, overwrite=self.overwrite)


classes = (TALKRIG_OT_export_fbx, TALKRIG_OT_export_gltf)
register, unregister = bpy.utils.register_classes_factory(classes)
