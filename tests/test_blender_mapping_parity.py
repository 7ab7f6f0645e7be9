"""Real Blender: on a small generated rig the add-on keys exactly what ``talkrig map-report`` reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

from blender_helpers import smooth_motion  # noqa: E402

from blender_addon.core import anim, apply  # noqa: E402
from blender_addon.core.target import find_target, mapping_report  # noqa: E402
from motion_server.cli import main  # noqa: E402

pytestmark = pytest.mark.blender

SHAPES = ["jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthClose"]
BONES = ["DEF-spine.006", "DEF-jaw", "neck"]


def _build_rig() -> bpy.types.Object:
    """An armature with the issue's bones and a triangle mesh with its shape keys, parented to it."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    arm_data = bpy.data.armatures.new("Rig")
    arm = bpy.data.objects.new("Rig", arm_data)
    scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    for i, name in enumerate(BONES):
        eb = arm_data.edit_bones.new(name)
        eb.head, eb.tail = (0.0, 0.0, float(i)), (0.0, 0.0, float(i) + 0.5)
    bpy.ops.object.mode_set(mode="OBJECT")
    me = bpy.data.meshes.new("Face")
    me.from_pydata([(0, 0, 0), (1, 0, 0), (0, 1, 0)], [], [(0, 1, 2)])
    face = bpy.data.objects.new("Face", me)
    scene.collection.objects.link(face)
    face.parent = arm
    face.shape_key_add(name="Basis")
    for n in SHAPES:
        face.shape_key_add(name=n)
    return face


def test_addon_keys_what_map_report_reports(capsys, tmp_path: Path):
    face = _build_rig()
    target = find_target(face)
    assert target.bone_names == BONES and target.shape_names == SHAPES
    (tmp_path / "s.txt").write_text("\n".join(target.shape_names) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(target.bone_names) + "\n")
    assert main(["map-report", "--names", str(tmp_path / "s.txt"), "--bones", str(tmp_path / "b.txt"), "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    rep = mapping_report(target)
    assert rep.matched == cli["channel_targets"] and rep.bones == cli["bone_roles"]

    apply.apply_motion(smooth_motion(10), target)
    keyed_bones = {fc.data_path.split('"')[1] for fc in anim.fcurves_of(target.armature)}
    assert keyed_bones == set(cli["profile"]["bones"]) == {"DEF-spine.006", "neck"}  # jaw: the shape key opens it
    key = target.keys[0]
    keyed_shapes = {fc.data_path.split('"')[1] for fc in anim.fcurves_of(key)}
    assert keyed_shapes == set(cli["profile"]["shapes"]) == set(SHAPES)
