"""Where the add-on finds rig_mapping and the torch-free motion-server client.

Inside the repository (``import blender_addon`` from the project venv) the top-level packages are used.
In the built extension they are vendored under ``<extension>/_vendor/`` (the build script copies them
there and rewrites their absolute imports), because an extension may only import relatively: its
package name is ``bl_ext.<repo>.talkrig``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

_HERE = Path(__file__).resolve().parent
VENDORED = (_HERE / "_vendor" / "rig_mapping").is_dir()

_RIG = f"{__package__}._vendor.rig_mapping" if VENDORED else "rig_mapping"
_SERVER = f"{__package__}._vendor.motion_server" if VENDORED else "motion_server"


def rig(module: str = "") -> ModuleType:
    """A rig_mapping module, e.g. ``rig("motion")``; ``rig()`` is the package itself."""
    return importlib.import_module(f"{_RIG}.{module}" if module else _RIG)


def server(module: str) -> ModuleType:
    """A torch-free motion_server module: ``server("client")``, ``"client_process"``, ``"protocol"``,
    ``"options"`` (the generation option table the panel's properties are built from) or ``"animate.plan"``
    (the output naming rules `talkrig animate` and the batch runner share)."""
    if module not in ("client", "client_process", "protocol", "options", "animate.plan"):
        raise ValueError(f"only the torch-free client/protocol modules are available in Blender, not {module!r}")
    return importlib.import_module(f"{_SERVER}.{module}")


def asset(name: str) -> Path:
    """A bundled asset (e.g. ``ict_face_arkit.npz``): vendored in the extension, else the repository's."""
    for p in (_HERE / "_vendor" / "assets" / name, _HERE.parent / "motion_server" / "assets" / name):
        if p.is_file():
            return p
    raise FileNotFoundError(f"asset {name} not found in the extension (_vendor/assets) or motion_server/assets")
