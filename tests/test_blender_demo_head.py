"""The bundled demo head, built with the real bpy wheel headless."""

from __future__ import annotations

import numpy as np
import pytest

bpy = pytest.importorskip("bpy", reason="the bpy wheel is needed for Blender tests (pip install bpy==5.0.1)")

from blender_addon.core.demo_head import ASSET, build_demo_head, load_asset, save_demo_head  # noqa: E402
from blender_addon.core.target import find_target  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def head():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return build_demo_head()


def _coords(data) -> np.ndarray:
    co = np.empty(len(data) * 3, np.float32)
    data.foreach_get("co", co)
    return co.reshape(-1, 3)


def test_shape_keys_are_the_assets_53_in_file_order(head):
    names = [str(n) for n in load_asset(ASSET)["names"]]
    blocks = head.mesh.data.shape_keys.key_blocks
    assert len(names) == 53
    assert [kb.name for kb in blocks] == ["Basis", *names]
    assert all(kb.value == 0.0 for kb in blocks[1:]), "a fresh character must rest on its neutral face"


def test_armature_has_head_and_jaw_bones_found_by_the_addon(head):
    assert {"root", "neck", "head", "jaw"} <= set(head.armature.data.bones.keys())
    target = find_target(head.mesh)
    assert target.meshes == [head.mesh]
    assert target.armature == head.armature
    assert target.bones.get("head") == "head" and target.bones.get("jaw") == "jaw"
    # head bone points up with zero roll: its local axes are the FaceMotion head frame (X left, Y up, Z fwd)
    m = np.array(head.armature.data.bones["head"].matrix_local.to_3x3())
    np.testing.assert_allclose(m[:, 1], [0, 0, 1], atol=1e-5)  # bone Y = world up
    np.testing.assert_allclose(m[:, 2], [0, -1, 0], atol=1e-5)  # bone Z = character forward (-Y)


def test_metres_z_up_facing_minus_y_and_jaw_opens_downwards(head):
    base = _coords(head.mesh.data.shape_keys.key_blocks["Basis"].data)
    size = base.max(0) - base.min(0)
    assert 0.15 < size[2] < 0.6, f"head height {size[2]:.3f} m: the cm -> m scale is off"
    nose = base[np.argmin(base[:, 1])]  # the most forward point (character looks along -Y)
    assert abs(nose[0]) < 0.01 and base[:, 2].min() < nose[2] < base[:, 2].max()
    jaw = _coords(head.mesh.data.shape_keys.key_blocks["jawOpen"].data) - base
    moved = np.linalg.norm(jaw, axis=1) > 0.005
    assert moved.sum() > 100
    assert jaw[moved, 2].mean() < 0, "jawOpen must move the chin down (+Z is up)"
    assert base[moved, 2].mean() < nose[2], "jawOpen must move the lower face"


def test_whole_face_follows_the_head_bone(head):
    group = head.mesh.vertex_groups["head"]
    n = len(head.mesh.data.vertices)
    weights = [v.groups[0].weight for v in head.mesh.data.vertices if v.groups and v.groups[0].group == group.index]
    assert len(weights) == n and min(weights) == 1.0
    mod = next(m for m in head.mesh.modifiers if m.type == "ARMATURE")
    assert mod.object == head.armature
    # turning the head bone moves the nose sideways
    deps = bpy.context.evaluated_depsgraph_get()
    before = _coords(head.mesh.evaluated_get(deps).data.vertices)
    pb = head.armature.pose.bones["head"]
    pb.rotation_mode = "XYZ"
    pb.rotation_euler = (0.0, 0.5, 0.0)  # yaw about the bone's Y (up) axis
    bpy.context.view_layer.update()
    after = _coords(head.mesh.evaluated_get(bpy.context.evaluated_depsgraph_get()).data.vertices)
    pb.rotation_euler = (0.0, 0.0, 0.0)
    bpy.context.view_layer.update()
    nose = np.argmin(before[:, 1])
    assert abs(after[nose, 0] - before[nose, 0]) > 0.03


def test_face_has_skin_eye_and_mouth_materials(head):
    mats = [m.name for m in head.mesh.data.materials]
    idx = np.empty(len(head.mesh.data.polygons), np.int32)
    head.mesh.data.polygons.foreach_get("material_index", idx)
    used = {mats[i] for i in np.unique(idx)}
    assert {"TalkRig_Skin", "TalkRig_EyeWhite", "TalkRig_Iris", "TalkRig_Teeth"} <= used
    assert np.bincount(idx).argmax() == mats.index("TalkRig_Skin")


def test_save_as_blend_round_trips_and_refuses_to_overwrite(tmp_path):
    out = save_demo_head(tmp_path / "head.blend")
    with pytest.raises(FileExistsError, match="overwrite"):
        save_demo_head(out)
    bpy.ops.wm.open_mainfile(filepath=str(out))
    meshes = [o for o in bpy.data.objects if o.type == "MESH"]
    assert len(meshes) == 1 and len(meshes[0].data.shape_keys.key_blocks) == 54
    bpy.ops.wm.read_factory_settings(use_empty=True)
