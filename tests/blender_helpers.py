"""Shared helpers for the Blender tests (bpy wheel, headless)."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VALIDATOR = REPO / "tools" / "gltf_validate.js"


def smooth_motion(n_frames: int = 60, fps: float = 30.0, seed: int = 0, name: str = "hello.wav"):
    """A FaceMotion whose every channel moves (distinct phases), tongueOut kept at 0 (ICT has no tongue),
    with a nodding, turning head."""
    from rig_mapping import FaceMotion
    from rig_mapping.arkit import ARKIT_INDEX

    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None] / fps
    w = 0.5 + 0.45 * np.sin(2 * np.pi * (0.5 + rng.random(52)) * t + rng.random(52) * 6)
    w[:, ARKIT_INDEX["tongueOut"]] = 0.0
    h = np.zeros((n_frames, 6))
    h[:, 0] = 0.15 * np.sin(2 * np.pi * 0.7 * t[:, 0])
    h[:, 1] = 0.1 * np.cos(2 * np.pi * 0.4 * t[:, 0])
    h[:, 2] = 0.05 * np.sin(2 * np.pi * 0.3 * t[:, 0])
    return FaceMotion.from_arrays(w.astype(np.float32), h.astype(np.float32), fps=fps, meta={"audio_name": name})


def glb_json(path: Path) -> dict:
    """The JSON chunk of a .glb."""
    data = Path(path).read_bytes()
    magic, _version, _length = struct.unpack("<4sII", data[:12])
    assert magic == b"glTF", f"{path} is not a GLB file"
    n, kind = struct.unpack("<I4s", data[12:20])
    assert kind == b"JSON"
    return json.loads(data[20 : 20 + n])


def glb_accessor(path: Path, js: dict, index: int) -> np.ndarray:
    """Read a float accessor (SCALAR/VEC3/VEC4) from a .glb's binary chunk."""
    data = Path(path).read_bytes()
    n = struct.unpack("<I", data[12:16])[0]
    bin_start = 20 + n + 8
    acc = js["accessors"][index]
    view = js["bufferViews"][acc["bufferView"]]
    assert acc["componentType"] == 5126, "expected float32"
    width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[acc["type"]]
    off = bin_start + view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    arr = np.frombuffer(data, np.float32, count=acc["count"] * width, offset=off)
    return arr.reshape(acc["count"], width) if width > 1 else arr


def run_gltf_validator(path: Path) -> dict | None:
    """Khronos glTF-Validator report (JSON), or None when node / the npm package is absent."""
    node = shutil.which("node")
    if node is None or not (REPO / "node_modules" / "gltf-validator").is_dir():
        return None
    r = subprocess.run([node, str(VALIDATOR), str(path)], capture_output=True, text=True, timeout=300)
    if r.returncode == 2:
        raise RuntimeError(f"glTF-Validator could not run: {r.stderr}")
    return json.loads(r.stdout)


@contextmanager
def addon_with_demo_head(fps: int = 30) -> Iterator:
    """An empty scene at ``fps`` with the add-on enabled and the demo head built and active; the add-on
    is disabled again afterwards."""
    import addon_utils
    import bpy

    from blender_addon.core.demo_head import build_demo_head

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    try:
        head = build_demo_head()
        bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = fps, 1.0
        bpy.context.view_layer.objects.active = head.mesh
        yield head
    finally:
        addon_utils.disable("blender_addon", default_set=True)


class _Layout:
    """Stands in for a UILayout (Blender makes none in background mode): records what a panel draws and
    checks that every property it shows exists and every operator is registered."""

    def __init__(self, drawn: list[str]) -> None:
        self.drawn = drawn
        self.operator_context = "INVOKE_DEFAULT"

    def row(self, **_):
        return self

    column = box = row

    def label(self, text: str = "", **_):
        self.drawn.append(text)

    def prop(self, data, name: str, **_):
        assert hasattr(data, name), name
        self.drawn.append(f"prop:{name}")

    def operator(self, idname: str, **_):
        import bpy

        group, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, group), name), idname
        self.drawn.append(f"op:{idname}")
        return type("Props", (), {})()

    def progress(self, text: str = "", **_):
        self.drawn.append(text)


def draw_panel(panel: type, context) -> list[str]:
    """What ``panel.draw`` shows in ``context``: labels' text, ``prop:<name>``, ``op:<idname>``."""
    drawn: list[str] = []
    panel.draw(type("P", (), {"layout": _Layout(drawn)})(), context)
    return drawn
