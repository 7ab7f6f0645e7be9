"""Where the add-on finds its bundled assets (the demo head's mesh).

The add-on imports rig_mapping and the torch-free motion_server client with plain imports; the extension
build (scripts/build_extension.py) vendors both under ``<extension>/_vendor/`` and rewrites those imports
into relative ones, because an extension is imported as ``bl_ext.<repo>.talkrig``. Data files are not
imports: they are looked up here, in the extension's ``_vendor/assets`` or else the repository's
``motion_server/assets``.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
_PLACES = (_HERE / "_vendor" / "assets", _HERE.parent / "motion_server" / "assets")


def asset(name: str) -> Path:
    """A bundled asset (e.g. ``ict_face_arkit.npz``): the extension's copy, else the repository's. When
    neither exists the repository path is returned, so the reader's error names the missing file."""
    for place in _PLACES:
        if (place / name).is_file():
            return place / name
    return _PLACES[-1] / name
