"""What `pip install` ships: every data file in the packages (mapping profiles, performer and voice data,
sentence lists, model configs and checkpoint, the demo head with its license, add-on data) matches a
package-data pattern in pyproject.toml, so an installed talkrig finds them like a clone does."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("rig_mapping", "motion_server", "blender_addon")


def _data_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", *PACKAGES], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot list the tracked files")
    return [f for f in out.stdout.splitlines() if not f.endswith(".py") and "/__pycache__/" not in f]


def test_every_tracked_data_file_is_package_data() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = cfg["package-data"]["*"]
    files = _data_files()
    must_ship = {"motion_server/assets/ict_face_arkit.npz", "motion_server/assets/ict_face_arkit.LICENSE.txt",
                 "motion_server/assets/README.md", "blender_addon/blender_manifest.toml"}
    assert must_ship <= set(files)
    missed = [f for f in files if not any(fnmatch.fnmatch(Path(f).name, p) for p in patterns)]
    assert not missed, f"add patterns for {missed} to [tool.setuptools.package-data] in pyproject.toml"
    # a trained default checkpoint (config.json + *.safetensors) would ship too
    assert {"*.json", "*.safetensors"} <= set(patterns)
