"""rig_mapping runs inside Blender's Python: importing it (every submodule) must not pull in torch, bpy
or scipy."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO

SCRIPT = """
import importlib, json, pkgutil, sys
import rig_mapping
mods = ["rig_mapping"]
for m in pkgutil.walk_packages(rig_mapping.__path__, "rig_mapping."):
    importlib.import_module(m.name)
    mods.append(m.name)
print(json.dumps({"modules": mods, "heavy": [h for h in ("torch", "bpy", "scipy") if h in sys.modules]}))
"""


def test_rig_mapping_imports_without_torch_bpy_or_scipy():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [], f"rig_mapping imported {out['heavy']}"
    for expected in ("rig_mapping.automap", "rig_mapping.profile", "rig_mapping.keyframes",
                     "rig_mapping.formats.livelink_csv", "rig_mapping.formats.audio2face_json",
                     "rig_mapping.formats.npz"):
        assert expected in out["modules"]
