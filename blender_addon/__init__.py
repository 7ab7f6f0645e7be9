"""TalkRig Blender extension: speech audio -> ARKit facial animation on a character.

Importing this package is cheap and has no side effects (the batch runner and tests import
``blender_addon.core``); ``register()`` brings in the UI, operators and the ``talkrig`` CLI command
(``blender -b -c talkrig ...``: the batch runner ``headless``, with `talkrig animate`'s flags).
Inside Blender the package is ``bl_ext.<repo>.talkrig``: the add-on's own modules import each other
relatively, and the extension build rewrites their imports of rig_mapping and motion_server into imports
of the copies it vendors (scripts/build_extension.py).
"""

from __future__ import annotations

_registered: list = []
_cli_handle = None


def register() -> None:
    global _cli_handle
    import bpy

    from . import (
        headless,
        ops_export,
        ops_generate,
        ops_livelink,
        ops_mapping,
        ops_server,
        ops_transcribe,
        preferences,
        properties,
        ui,
    )

    # One list, in dependency order: settings before the operators that read them, panels last.
    for mod in (preferences, properties, ops_server, ops_mapping, ops_generate, ops_transcribe, ops_livelink,
                ops_export, ui):
        mod.register()
        _registered.append(mod)
    if hasattr(bpy.utils, "register_cli_command"):  # Blender 4.2+
        _cli_handle = bpy.utils.register_cli_command("talkrig", headless.cli_main)


def unregister() -> None:
    global _cli_handle
    import bpy

    from . import server_link

    server_link.shutdown()
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    while _registered:
        _registered.pop().unregister()
