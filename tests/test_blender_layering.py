"""blender_addon runs inside Blender's Python, which has no torch: enabling the add-on and importing every
one of its modules (with the repository's rig_mapping and torch-free client) must not pull in torch,
scipy or librosa; and it may import only the torch-free motion_server modules the extension vendors
(the extension build refuses anything else, with the same check)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import build_extension  # noqa: E402

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
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "scipy", "librosa", "torchaudio"})
print(json.dumps({"modules": mods, "heavy": heavy}))
"""


def test_addon_imports_without_torch_scipy_or_librosa():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["heavy"] == [], f"blender_addon pulled in {out['heavy']}"
    for expected in ("blender_addon.ops_generate", "blender_addon.headless", "blender_addon.core.apply",
                     "blender_addon.core.export", "blender_addon.server_link"):
        assert expected in out["modules"]


def test_addon_imports_only_the_vendored_torch_free_server_modules():
    assert build_extension.addon_import_problems() == []
    # the import contract (lint-imports, tests/test_import_contracts.py) allows the same four modules
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    (c,) = [c for c in contracts["contracts"] if c["id"] == "addon-client-only"]
    assert sorted(i.split(" -> motion_server.")[1] for i in c["ignore_imports"]) == sorted(build_extension.SERVER_MODULES)
    # what a stray import would be told (the build stops with it)
    bad = "from motion_server.synth import engine\nfrom motion_server import client, engines\nimport rig_mapping\n"
    problems = build_extension.import_problems(bad, Path("blender_addon/x.py"), "blender_addon")
    assert len(problems) == 3
    assert "x.py:1: motion_server.synth is not available in Blender" in problems[0]
    assert "motion_server.engines is not available" in problems[1] and "client" in problems[1]
    assert "`import rig_mapping` cannot be vendored" in problems[2]
    # a vendored client module reaching for the server side through a relative import is caught too
    (problem,) = build_extension.import_problems("from .server import Server\n", Path("client.py"), "motion_server")
    assert "motion_server.server is not available in Blender" in problem
