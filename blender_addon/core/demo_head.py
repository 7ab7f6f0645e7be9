"""The bundled demo character: the ICT-FaceKit head (MIT) with its 53 ARKit-style shape keys and a small
armature (root / neck / head / jaw), built in bpy from ``motion_server/assets/ict_face_arkit.npz``.

The file holds the neutral mesh in centimetres, +Y up, +Z forward (the character looks along +Z). Blender
wants metres, +Z up, the character looking along -Y, so every point (x, y, z) becomes 0.01 * (x, -z, y):
a +90 degree turn about X.

The head bone points up (+Z) with zero roll, so its local axes are X = character's left, Y = up,
Z = forward: exactly the head frame of ``rig_mapping.arkit.HEAD_CHANNELS`` (pitch about X, yaw about Y,
roll about Z). The whole mesh is weighted to the head bone; the jaw bone carries no weights (the
``jawOpen`` shape key opens the mouth) and exists for mapping profiles that drive a jaw bone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .._deps import asset as bundled_asset

ASSET = bundled_asset("ict_face_arkit.npz")  # the extension's copy, else the repository's
DEFAULT_NAME = "TalkRigHead"
# MIT asks for the notice in copies: glTF files carrying the head say where it comes from (asset.copyright)
CREDIT = ("Demo head: ICT-FaceKit face model, Copyright (c) 2020 USC Institute for Creative Technologies, "
          "MIT License (github.com/ICT-VGL/ICT-FaceKit)")

# Joint positions in the asset's own frame (cm, +Y up, +Z forward), placed by eye on the ICT mesh.
_JOINTS_CM = {
    "root": (0.0, -19.0, -2.0),
    "neck": (0.0, -15.0, -2.5),
    "head": (0.0, -6.0, -2.5),  # top of the spine: the nod/turn pivot
    "head_tip": (0.0, 13.0, -2.5),
    "jaw": (0.0, 1.0, 1.0),  # between the two jaw joints, just in front of the ears
    "jaw_tip": (0.0, -9.0, 8.5),  # chin
}

# (base colour RGBA, roughness) per material; the palette is plain so the lip motion reads clearly.
_MATERIALS = {
    "TalkRig_Skin": ((0.74, 0.48, 0.36, 1.0), 0.55),
    "TalkRig_Mouth": ((0.55, 0.22, 0.22, 1.0), 0.6),
    "TalkRig_Teeth": ((0.92, 0.90, 0.84, 1.0), 0.3),
    "TalkRig_EyeWhite": ((0.93, 0.93, 0.92, 1.0), 0.15),
    "TalkRig_Iris": ((0.16, 0.10, 0.06, 1.0), 0.15),
    "TalkRig_Lashes": ((0.22, 0.14, 0.10, 1.0), 0.8),
}
_MAT_INDEX = {name: i for i, name in enumerate(_MATERIALS)}


@dataclass
class DemoHead:
    """The objects ``build_demo_head`` created."""

    mesh: bpy.types.Object
    armature: bpy.types.Object

    @property
    def objects(self) -> list[bpy.types.Object]:
        return [self.armature, self.mesh]


def to_blender(points_cm: np.ndarray) -> np.ndarray:
    """Asset frame (cm, +Y up, +Z forward) -> Blender (m, +Z up, character looking along -Y)."""
    p = np.asarray(points_cm, dtype=np.float64)
    return (0.01 * np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)).astype(np.float32)


def load_asset(path: str | Path = ASSET) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"demo head asset missing: {path} (reinstall talkrig or restore the file)")
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in ("names", "neutral", "triangles", "deltas")}


def _components(n_verts: int, tris: np.ndarray) -> np.ndarray:
    """Connected-component label per vertex (min-label propagation with pointer jumping; numpy only)."""
    labels = np.arange(n_verts)
    while True:
        low = labels[tris].min(axis=1)
        new = labels.copy()
        for k in range(3):
            np.minimum.at(new, tris[:, k], low)
        np.minimum.at(new, labels, new)  # pull each root down to its members' minimum
        new = new[new]
        if np.array_equal(new, labels):
            return labels
        labels = new


def _face_materials(verts: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Material index per triangle (-1: leave the triangle out) from the ICT mesh's separate pieces,
    told apart by position and vertex count: the largest piece is skin; pieces below the nose tip are
    mouth interior (large) or teeth; at eye height: eyeballs (large, with a dark iris disc on the
    front), eyelashes, and thin shells meant to be drawn transparent, which are dropped.
    Asset frame (cm, +Y up, +Z forward)."""
    labels = _components(len(verts), tris)
    uniq = np.unique(labels[tris[:, 0]])
    counts = np.bincount(labels)[uniq]  # vertices per piece
    skin = uniq[np.argmax(counts)]
    tri_label = labels[tris[:, 0]]
    centre = verts[tris].mean(axis=1)
    mat = np.full(len(tris), _MAT_INDEX["TalkRig_Skin"], dtype=np.int32)
    nose_y = verts[np.argmax(verts[:, 2]), 1]
    for lab, count in zip(uniq, counts, strict=True):
        if lab == skin:
            continue
        sel = tri_label == lab
        cy = centre[sel, 1].mean()
        if cy < nose_y:
            mat[sel] = _MAT_INDEX["TalkRig_Mouth" if count > 1000 else "TalkRig_Teeth"]
        elif count < 100:  # tear-duct caps: thin shells the glTF viewer would draw opaque
            mat[sel] = -1
        elif count < 120:  # eyelashes
            mat[sel] = _MAT_INDEX["TalkRig_Lashes"]
        elif count < 500:  # lid occlusion shells and tear lines: meant to be transparent, so dropped
            mat[sel] = -1
        else:
            mat[sel] = _MAT_INDEX["TalkRig_EyeWhite"]  # an eyeball: dark iris disc on its front
            pts = verts[labels == lab]
            front = pts[np.argmax(pts[:, 2])]
            radius = 0.22 * (pts[:, 0].max() - pts[:, 0].min())
            d = np.linalg.norm(centre[sel][:, :2] - front[:2], axis=1)
            iris = np.flatnonzero(sel)[(d < radius) & (centre[sel][:, 2] > front[2] - radius)]
            mat[iris] = _MAT_INDEX["TalkRig_Iris"]
    return mat


def _material(name: str, rgba: tuple[float, ...], roughness: float) -> bpy.types.Material:
    mat = bpy.data.materials.get(name) or bpy.data.materials.new(name)
    mat.diffuse_color = rgba  # what Workbench shows
    mat.roughness = roughness
    if mat.node_tree is None:  # Blender < 5 creates materials without nodes
        mat.use_nodes = True
    bsdf = next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is not None:  # Cycles / EEVEE / glTF export read the node tree
        bsdf.inputs["Base Color"].default_value = rgba
        bsdf.inputs["Roughness"].default_value = roughness
    return mat


def _build_mesh(name: str, asset: dict[str, np.ndarray]) -> bpy.types.Object:
    neutral = asset["neutral"].astype(np.float32)
    tris = asset["triangles"].astype(np.int64)
    mat_index = _face_materials(neutral, tris)
    keep = mat_index >= 0
    tris, mat_index = tris[keep], mat_index[keep]
    me = bpy.data.meshes.new(name)
    me.vertices.add(len(neutral))
    me.vertices.foreach_set("co", to_blender(neutral).ravel())
    me.loops.add(tris.size)
    me.loops.foreach_set("vertex_index", tris.ravel().astype(np.int32))
    me.polygons.add(len(tris))
    me.polygons.foreach_set("loop_start", np.arange(0, tris.size, 3, dtype=np.int32))
    me.update(calc_edges=True)
    for mname, (rgba, rough) in _MATERIALS.items():
        me.materials.append(_material(mname, rgba, rough))
    me.polygons.foreach_set("material_index", mat_index)
    me.shade_smooth()
    obj = bpy.data.objects.new(name, me)
    obj["credit"] = CREDIT  # travels with .blend files

    # Shape keys: Basis + one per asset shape, names kept as in the file (ICT's _L/_R convention).
    obj.shape_key_add(name="Basis", from_mix=False)
    deltas = asset["deltas"]
    for i, sname in enumerate(asset["names"]):
        kb = obj.shape_key_add(name=str(sname), from_mix=False)
        kb.data.foreach_set("co", to_blender(neutral + deltas[i].astype(np.float32)).ravel())
        kb.slider_min, kb.slider_max, kb.value = 0.0, 1.0, 0.0
    obj.data.shape_keys.use_relative = True
    return obj


def _build_armature(name: str, scene: bpy.types.Scene) -> bpy.types.Object:
    arm = bpy.data.armatures.new(name + "_Rig")
    obj = bpy.data.objects.new(name + "_Rig", arm)
    scene.collection.objects.link(obj)
    j = {k: tuple(float(c) for c in to_blender(np.array(v))) for k, v in _JOINTS_CM.items()}
    view_layer = bpy.context.view_layer
    prev_active = view_layer.objects.active
    view_layer.objects.active = obj
    with bpy.context.temp_override(active_object=obj, object=obj):
        bpy.ops.object.mode_set(mode="EDIT")
        eb = arm.edit_bones

        def bone(bname: str, head: tuple, tail: tuple, parent: bpy.types.EditBone | None = None) -> bpy.types.EditBone:
            b = eb.new(bname)
            b.head, b.tail, b.roll = head, tail, 0.0
            b.parent = parent
            b.use_deform = bname == "head"
            return b

        root = bone("root", j["root"], j["neck"])
        neck = bone("neck", j["neck"], j["head"], root)
        neck.use_connect = True
        head = bone("head", j["head"], j["head_tip"], neck)
        head.use_connect = True
        bone("jaw", j["jaw"], j["jaw_tip"], head)
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = prev_active
    return obj


def build_demo_head(
    scene: bpy.types.Scene | None = None, name: str = DEFAULT_NAME, asset_path: str | Path = ASSET
) -> DemoHead:
    """Create the demo head (mesh with 53 shape keys, parented to a root/neck/head/jaw armature) in
    ``scene`` (default: the current scene) and return its objects."""
    scene = scene or bpy.context.scene
    asset = load_asset(asset_path)
    mesh_obj = _build_mesh(name, asset)
    scene.collection.objects.link(mesh_obj)
    arm_obj = _build_armature(name, scene)

    # Deformed by the Armature modifier but not parented: glTF wants skinned meshes at the root
    # (the validator warns NODE_SKINNED_MESH_NON_ROOT otherwise) and the pose moves it all the same.
    group = mesh_obj.vertex_groups.new(name="head")
    group.add(range(len(mesh_obj.data.vertices)), 1.0, "REPLACE")
    mod = mesh_obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm_obj
    return DemoHead(mesh=mesh_obj, armature=arm_obj)


def save_demo_head(path: str | Path, overwrite: bool = False) -> Path:
    """Build the demo head in an empty scene and save it as .blend, .glb or .gltf."""
    path = Path(path).resolve()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (or --overwrite) to replace it")
    suffix = path.suffix.lower()
    if suffix not in (".blend", ".glb", ".gltf"):
        raise ValueError(f"cannot save the demo head as {suffix!r}; use .blend, .glb or .gltf")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    head = build_demo_head()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".blend":
        bpy.ops.wm.save_as_mainfile(filepath=str(path), check_existing=False)
    else:
        for o in bpy.context.scene.objects:
            o.select_set(o in head.objects)
        bpy.ops.export_scene.gltf(
            filepath=str(path),
            export_format="GLB" if suffix == ".glb" else "GLTF_SEPARATE",
            use_selection=True,
            export_morph=True,
            export_skins=True,
            export_animations=False,
            export_copyright=CREDIT,
        )
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m blender_addon.core.demo_head OUT.blend|OUT.glb|OUT.gltf [--overwrite]``"""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m blender_addon.core.demo_head",
                                 description="Save the TalkRig demo head (ICT-FaceKit, MIT) as .blend/.glb/.gltf.")
    ap.add_argument("out")
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)
    try:
        print(save_demo_head(args.out, overwrite=args.overwrite))
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
