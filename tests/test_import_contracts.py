"""Which package may import which (pyproject.toml ``[tool.importlinter]``, docs/architecture.md): the
repository keeps every contract, and a contract really fails when an import crosses a layer."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("rig_mapping", "motion_server", "blender_addon")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root`` with the repository's contracts."""
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test tools with `bash scripts/setup.sh --test` "
                    "(or `pip install -e .[test]`)")
    # PYTHONPATH first: the venv's editable install may point at another checkout of the same packages
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def contract_names() -> dict[str, str]:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {c["id"]: c["name"] for c in cfg["contracts"]}


def test_repository_keeps_every_import_contract() -> None:
    r = lint_imports(REPO)
    assert r.returncode == 0, f"lint-imports found broken contracts:\n{r.stdout}\n{r.stderr}"
    names = contract_names()
    assert len(names) >= 7
    kept = " ".join(r.stdout.split())  # long names wrap over lines
    for name in names.values():
        assert f"{name} KEPT" in kept, f"contract {name!r} not reported kept:\n{r.stdout}"


def test_a_crossing_import_breaks_the_contracts(tmp_path: Path) -> None:
    """Copy the sources, add two forbidden imports, and lint-imports names each of them."""
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=lambda d, names: [
            n for n in names if not (n.endswith(".py") or (Path(d) / n).is_dir()) or n == "__pycache__"])
    # the runtime procedural engine reading the training corpus; the phone inventory importing the aligner
    engine = tmp_path / "motion_server" / "engine" / "procedural.py"
    engine.write_text(engine.read_text(encoding="utf-8") + "\nfrom motion_server.synth import corpus  # noqa\n")
    phones = tmp_path / "motion_server" / "phones" / "__init__.py"
    phones.write_text(phones.read_text(encoding="utf-8") + "\nfrom motion_server import align  # noqa\n")
    # the add-on reaching past the vendored client into the server side
    ops = tmp_path / "blender_addon" / "ops_generate.py"
    ops.write_text(ops.read_text(encoding="utf-8") + "\nfrom motion_server.engine import procedural  # noqa\n")

    r = lint_imports(tmp_path)
    assert r.returncode != 0, r.stdout
    out = " ".join(r.stdout.split())
    names = contract_names()
    for cid in ("generation-without-corpus", "motion-server-layers", "no-cycles", "addon-client-only"):
        assert f"{names[cid]} BROKEN" in out, f"{cid} should be broken:\n{r.stdout}"
    for cid in ("rig-mapping-core", "client-torch-free"):
        assert f"{names[cid]} KEPT" in out, f"{cid} should still be kept:\n{r.stdout}"
    assert "motion_server.engine.procedural -> motion_server.synth" in out
    assert "motion_server.phones -> motion_server.align" in out
    assert "blender_addon.ops_generate -> motion_server.engine.procedural" in out


def test_architecture_doc_names_every_layer() -> None:
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    layers = next(c for c in cfg["contracts"] if c["id"] == "motion-server-layers")["layers"]
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    for layer in layers:
        for pkg in layer.split("|"):
            assert f"`{pkg.strip()}`" in doc, f"docs/architecture.md does not describe motion_server.{pkg.strip()}"
