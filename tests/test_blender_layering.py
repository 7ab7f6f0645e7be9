"""blender_addon runs inside Blender's Python, which has no torch: enabling the add-on and importing every
one of its modules (with the repository's rig_mapping and torch-free client) must not pull in torch,
scipy or librosa."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

pytest.importorskip("bpy")
pytestmark = pytest.mark.blender

SCRIPT = """
import importlib, json, pkgutil, sys
import bpy, addon_utils
addon_utils.enable("blender_addon", default_set=True, handle_error=None)
import blender_addon
mods = ["blender_addon"]
for m in pkgutil.walk_packages(blender_addon.__path__, "blender_addon."):
    importlib.import_module(m.name)
    mods.append(m.name)
from blender_addon._deps import server
for name in ("client", "client_process", "protocol"):
    server(name)
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "scipy", "librosa", "torchaudio"})
print(json.dumps({"modules": mods, "heavy": heavy}))
"""


def test_addon_imports_without_torch_scipy_or_librosa():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [], f"blender_addon pulled in {out['heavy']}"
    for expected in ("blender_addon.operators", "blender_addon.headless", "blender_addon.core.apply",
                     "blender_addon.core.export", "blender_addon.server_link"):
        assert expected in out["modules"]
