#!/usr/bin/env python3
"""Build the TalkRig Blender extension zip(s).

    python scripts/build_extension.py --out dist/            # one zip per platform (default)
    python scripts/build_extension.py --out dist/ --single   # one zip holding every platform's wheels

Steps: stage blender_addon/ as the extension root; vendor rig_mapping and the torch-free
motion_server modules (protocol, options, client, client_process) under ``_vendor/``; rewrite every
absolute import of rig_mapping / motion_server, in the add-on and in the vendored copies, into a relative
import of the vendored copy, because an extension is imported as ``bl_ext.<repo>.talkrig`` (the
repository's add-on imports them plainly, so tools can follow its imports); refuse any import of another
motion_server module (the rest of the server needs torch, which Blender lacks); download pyzmq and msgpack wheels,
unmodified from PyPI, for CPython 3.11 (Blender 4.2-5.0) and 3.13 (Blender 5.1+) on every platform
(cached in build/wheel_cache/); write ``wheels`` and ``platforms`` into the staged manifest; zip with
Blender's own extension builder and validate every zip with Blender's validator (both come with the
bpy wheel: bl_pkg/cli/blender_ext.py).
"""

from __future__ import annotations

import argparse
import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "blender_addon"
CACHE = REPO / "build" / "wheel_cache"

# Blender platform -> wheel platform tags pip may pick (newest first is not required; pip chooses).
PLATFORMS: dict[str, list[str]] = {
    "linux-x64": ["manylinux_2_28_x86_64", "manylinux_2_26_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"],
    "linux-arm64": ["manylinux_2_28_aarch64", "manylinux_2_26_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"],
    "macos-arm64": ["macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"],
    "macos-x64": ["macosx_10_15_x86_64", "macosx_10_13_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2",
                  "macosx_10_9_universal2"],
    "windows-x64": ["win_amd64"],
}
PYTHONS = ("3.11", "3.13")  # Blender 4.2-5.0 and 5.1+
PACKAGES = ("pyzmq==27.3.0", "msgpack==1.2.4")

# The motion_server modules Blender may import: torch-free (numpy, zmq, msgpack and rig_mapping only). Only
# these are vendored; an add-on import of any other motion_server module fails the build.
SERVER_MODULES = ("protocol", "options", "client", "client_process",
                  # output naming, overwrite rules and manifests shared by `talkrig animate` and the batch
                  # runner (pure path logic)
                  "animate.plan", "animate.manifest")
_SERVER_PACKAGES = {m.rsplit(".", 1)[0] for m in SERVER_MODULES if "." in m}
# Vendored source: (repo path, path under _vendor/). motion_server's __init__ may grow torch-side code,
# so the vendored package gets its own tiny __init__.
VENDOR = [
    ("rig_mapping", "rig_mapping"),
    *[(f"motion_server/{m.replace('.', '/')}.py", f"motion_server/{m.replace('.', '/')}.py") for m in SERVER_MODULES],
    # the animate package's __init__ is a docstring only: its plan/manifest modules come without the rest
    ("motion_server/animate/__init__.py", "motion_server/animate/__init__.py"),
    ("motion_server/assets/ict_face_arkit.npz", "assets/ict_face_arkit.npz"),
    ("motion_server/assets/ict_face_arkit.LICENSE.txt", "assets/ict_face_arkit.LICENSE.txt"),
]
VENDORED_PACKAGES = ("rig_mapping", "motion_server")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", "_vendor", "*.zip")


class BuildError(RuntimeError):
    pass


def blender_ext_script() -> Path:
    """Blender's extension CLI (build/validate) shipped inside the bpy wheel."""
    try:
        import bpy  # noqa: F401  (only to locate the wheel; importing it is cheap headless)
    except ImportError:
        bpy = None
    roots = []
    if bpy is not None:
        roots.append(Path(bpy.__file__).parent)
    roots += list((REPO / ".venv" / "lib").glob("python3*/site-packages/bpy"))
    for root in roots:
        hits = sorted(root.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
        if hits:
            return hits[-1]
    raise BuildError("Blender's blender_ext.py not found: install the bpy wheel (pip install bpy==5.0.1, "
                     "scripts/setup.sh does it) or run with the project's .venv/bin/python")


def _imported(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` names, relative ones resolved against ``package``."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)] if node.level <= len(parts) else []
    return ".".join([*base, node.module] if node.module else base)


def import_problems(text: str, path: Path, package: str) -> list[str]:
    """Imports that cannot live in the extension: ``import rig_mapping...`` (only ``from`` imports are
    rewritten) and any motion_server module but SERVER_MODULES. ``package``: the file's package, to
    resolve its relative imports (the vendored motion_server files import each other relatively)."""
    out = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in VENDORED_PACKAGES:
                    out.append(f"{path}:{node.lineno}: `import {alias.name}` cannot be vendored; use "
                               f"`from {alias.name.rsplit('.', 1)[0]} import ...`")
        elif isinstance(node, ast.ImportFrom):
            parts = _imported(node, package).split(".")
            if parts[0] != "motion_server":
                continue
            mod = ".".join(parts[1:])
            # from motion_server import client / from motion_server.animate import plan / from .manifest import
            names = ([mod] if mod and mod not in _SERVER_PACKAGES
                     else [f"{mod}.{a.name}" if mod else a.name for a in node.names])
            for name in names:
                if name not in SERVER_MODULES:
                    out.append(f"{path}:{node.lineno}: motion_server.{name} is not available in Blender (only "
                               f"the torch-free {', '.join(SERVER_MODULES)} are vendored into the extension)")
    return out


def addon_import_problems() -> list[str]:
    """import_problems over the repository's add-on and the motion_server modules vendored with it."""
    out = []
    for p in sorted(ADDON.rglob("*.py")):
        rel = p.relative_to(ADDON)
        if "_vendor" not in rel.parts:
            out += import_problems(p.read_text(encoding="utf-8"), rel, ".".join(["blender_addon", *rel.parts[:-1]]))
    for m in SERVER_MODULES:
        p = REPO / "motion_server" / f"{m.replace('.', '/')}.py"
        out += import_problems(p.read_text(encoding="utf-8"), p.relative_to(REPO),
                               ".".join(["motion_server", *m.split(".")[:-1]]))
    return out


def rewrite_imports(text: str, depth: int, path: Path, into: str = "") -> str:
    """``from <vendored package>... import`` -> a relative import of the copy under ``into`` (e.g.
    "_vendor."), ``depth`` = the file's package depth under the folder holding ``into``."""
    up = "." * (depth + 1)  # from <folder>/<pkg>/<file>: ".." reaches <folder>
    lines = text.splitlines(keepends=True)
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] in VENDORED_PACKAGES for a in node.names):
            bad = next(a.name for a in node.names if a.name.split(".")[0] in VENDORED_PACKAGES)
            raise BuildError(f"{path}: `import {bad}` cannot be vendored; use `from {bad.split('.')[0]} import ...`")
        if (isinstance(node, ast.ImportFrom) and not node.level and node.module
                and node.module.split(".")[0] in VENDORED_PACKAGES):
            i = node.lineno - 1
            head, tail = lines[i][: node.col_offset], lines[i][node.col_offset:]
            lines[i] = head + re.sub(rf"^from\s+{re.escape(node.module)}\b", f"from {up}{into}{node.module}", tail)
    return "".join(lines)


def stage(work: Path) -> Path:
    root = work / "talkrig"
    if root.exists():
        shutil.rmtree(root)
    problems = addon_import_problems()
    if problems:
        raise BuildError("imports the extension cannot hold:\n  " + "\n  ".join(problems))
    shutil.copytree(ADDON, root, ignore=_IGNORE)
    for p in root.rglob("*.py"):  # the add-on's imports of rig_mapping/motion_server -> _vendor copies
        depth = len(p.relative_to(root).parts) - 1
        p.write_text(rewrite_imports(p.read_text(encoding="utf-8"), depth, p, "_vendor."), encoding="utf-8")
    vendor = root / "_vendor"
    vendor.mkdir()
    (vendor / "__init__.py").write_text('"""Vendored TalkRig packages (built by scripts/build_extension.py)."""\n')
    (vendor / "motion_server").mkdir()
    (vendor / "motion_server" / "__init__.py").write_text(
        f'"""The torch-free part of motion_server bundled into the Blender extension: {", ".join(SERVER_MODULES)}."""\n')
    for src, dst in VENDOR:
        s, d = REPO / src, vendor / dst
        if not s.exists():
            raise BuildError(f"{src} is missing from the repository; it is needed inside the extension")
        d.parent.mkdir(parents=True, exist_ok=True)
        if s.is_dir():
            shutil.copytree(s, d, ignore=_IGNORE)
        else:
            shutil.copy2(s, d)
    for p in vendor.rglob("*.py"):
        depth = len(p.relative_to(vendor).parts) - 1
        p.write_text(rewrite_imports(p.read_text(encoding="utf-8"), depth, p), encoding="utf-8")
    return root


def download_wheels(platforms: list[str], offline: bool = False) -> dict[str, list[Path]]:
    """Blender platform -> wheel files (cached; pip only runs for what the cache lacks)."""
    out: dict[str, list[Path]] = {}
    for plat in platforms:
        files: list[Path] = []
        for py in PYTHONS:
            dest = CACHE / plat / py
            dest.mkdir(parents=True, exist_ok=True)
            have = sorted(dest.glob("*.whl"))
            names = {w.name.split("-")[0].lower() for w in have}
            if not {p.split("==")[0] for p in PACKAGES} <= names:
                if offline:
                    raise BuildError(f"no cached wheels for {plat} / Python {py} in {dest} and --offline was given")
                cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                       "--only-binary=:all:", "--no-deps", "--implementation", "cp", "--python-version", py,
                       "--dest", str(dest), *[a for t in PLATFORMS[plat] for a in ("--platform", t)], *PACKAGES]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise BuildError(f"pip download failed for {plat} / Python {py}:\n{r.stderr[-2000:]}\n"
                                     "(needs PyPI access once; later builds use build/wheel_cache/)")
                have = sorted(dest.glob("*.whl"))
            files += have
        out[plat] = files
    return out


def write_manifest(root: Path, wheels: dict[str, list[Path]]) -> None:
    manifest = root / "blender_manifest.toml"
    text = manifest.read_text(encoding="utf-8")
    wdir = root / "wheels"
    wdir.mkdir(exist_ok=True)
    names: list[str] = []
    for files in wheels.values():
        for w in files:
            if w.name not in names:
                shutil.copy2(w, wdir / w.name)
                names.append(w.name)
    lines = "platforms = [" + ", ".join(f'"{p}"' for p in wheels) + "]\n"
    lines += "wheels = [\n" + "".join(f'  "./wheels/{n}",\n' for n in sorted(names)) + "]\n"
    # Top-level keys must come before the first [table].
    i = text.index("\n[")
    manifest.write_text(text[: i + 1] + lines + text[i + 1:], encoding="utf-8")
    tomllib.loads(manifest.read_text(encoding="utf-8"))  # still valid TOML


def run_blender_ext(args: list[str]) -> str:
    r = subprocess.run([sys.executable, str(blender_ext_script()), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise BuildError(f"blender_ext {' '.join(args)} failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r.stdout


def build(out: Path, platforms: list[str], split: bool = True, offline: bool = False, work: Path | None = None) -> list[Path]:
    work = work or REPO / "build" / "extension"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    root = stage(work)
    write_manifest(root, download_wheels(platforms, offline=offline))
    version = tomllib.loads((root / "blender_manifest.toml").read_text())["version"]
    before = set(out.glob(f"talkrig-{version}*.zip"))
    for z in before:
        z.unlink()  # our own previous build outputs only
    args = ["build", "--source-dir", str(root), "--output-dir", str(out)]
    if split:
        args.append("--split-platforms")
    else:
        args = ["build", "--source-dir", str(root), "--output-filepath", str(out / f"talkrig-{version}.zip")]
    run_blender_ext(args)
    zips = sorted(out.glob(f"talkrig-{version}*.zip"))
    if not zips:
        raise BuildError(f"Blender's builder wrote no zip into {out}")
    for z in zips:
        run_blender_ext(["validate", str(z)])
    return zips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "dist", help="output folder for the zip(s) (default dist/)")
    ap.add_argument("--platform", action="append", choices=sorted(PLATFORMS),
                    help="build only these Blender platforms (repeatable; default: all)")
    ap.add_argument("--single", action="store_true", help="one zip with every platform's wheels instead of one per platform")
    ap.add_argument("--offline", action="store_true", help="use only build/wheel_cache/, never PyPI")
    args = ap.parse_args(argv)
    try:
        zips = build(args.out, args.platform or list(PLATFORMS), split=not args.single, offline=args.offline)
    except BuildError as e:
        print(f"build_extension: {e}", file=sys.stderr)
        return 1
    for z in zips:
        print(f"{z} ({z.stat().st_size / 1e6:.1f} MB, validated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
