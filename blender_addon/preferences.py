"""Add-on preferences: where the motion server is and how to start one."""

from __future__ import annotations

import bpy

from .server_link import DEFAULT_ADDRESS


class TALKRIG_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server_address: bpy.props.StringProperty(
        name="Server address", default=DEFAULT_ADDRESS,
        description="ZeroMQ address of the TalkRig motion server (talkrig serve --bind ...)",
    )
    server_public_key: bpy.props.StringProperty(
        name="Server public key", default="",
        description="CurveZMQ public key of a remote server (40 characters or a server.key file); "
        "empty for a local server",
    )
    timeout_s: bpy.props.FloatProperty(
        name="Timeout (s)", default=30.0, min=1.0, max=3600.0,
        description="A server silent for this long fails the request",
    )
    auto_start: bpy.props.BoolProperty(
        name="Start a local server when needed", default=False,
        description="When no server answers, start one with the Python below",
    )
    python_path: bpy.props.StringProperty(
        name="Server Python", default="", subtype="FILE_PATH",
        description="A Python with TalkRig and torch installed (e.g. the project's .venv/bin/python); "
        "not Blender's own Python",
    )
    engine: bpy.props.StringProperty(
        name="Engine", default="",
        description="Engine for a locally started server (diffusion, procedural, energy); empty: server default",
    )
    export_dir: bpy.props.StringProperty(
        name="Export folder", default="", subtype="DIR_PATH",
        description="Default folder for FBX/glTF/CSV exports; empty: next to the .blend file",
    )

    def draw(self, context: bpy.types.Context) -> None:
        col = self.layout.column()
        col.prop(self, "server_address")
        col.prop(self, "server_public_key")
        col.prop(self, "timeout_s")
        box = col.box()
        box.prop(self, "auto_start")
        box.prop(self, "python_path")
        box.prop(self, "engine")
        col.prop(self, "export_dir")


def get_prefs(context: bpy.types.Context | None = None) -> TALKRIG_AddonPreferences | None:
    """This add-on's preferences, or None when it is used as a plain module (tests, headless wheel)."""
    context = context or bpy.context
    addon = context.preferences.addons.get(__package__)
    return addon.preferences if addon is not None else None


classes = (TALKRIG_AddonPreferences,)
register, unregister = bpy.utils.register_classes_factory(classes)
