"""Find what to animate: the character's meshes with ARKit-like shape keys and its head/neck/jaw bones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import bpy

from . import mapping


class TargetError(ValueError):
    """The selection holds nothing TalkRig can animate; the message says what to select instead."""


@dataclass
class Target:
    """A character: every mesh carrying matching shape keys plus the armature that moves the head."""

    root: bpy.types.Object
    meshes: list[bpy.types.Object] = field(default_factory=list)
    armature: bpy.types.Object | None = None
    bones: dict[str, str] = field(default_factory=dict)  # role ("head", "neck", "jaw") -> bone name
    # Every bone of the armature: rig_mapping, not the add-on, decides which of them are driven.
    bone_names: list[str] = field(default_factory=list)

    @property
    def keys(self) -> list[bpy.types.Key]:
        """Unique shape-key datablocks (linked duplicates share one Key; keying it once is enough)."""
        seen: dict[str, bpy.types.Key] = {}
        for ob in self.meshes:
            key = ob.data.shape_keys
            if key is not None and key.name not in seen:
                seen[key.name] = key
        return list(seen.values())

    @property
    def shape_names(self) -> list[str]:
        """Union of shape-key names over all meshes (Basis/reference keys excluded), in first-seen order."""
        out: dict[str, None] = {}
        for key in self.keys:
            for kb in key.key_blocks:
                if kb != key.reference_key:
                    out.setdefault(kb.name, None)
        return list(out)

    @property
    def objects(self) -> list[bpy.types.Object]:
        return ([self.armature] if self.armature else []) + list(self.meshes)

    @property
    def name(self) -> str:
        return self.root.name

    def describe(self) -> str:
        parts = [f"{len(self.meshes)} mesh(es) with shape keys ({', '.join(o.name for o in self.meshes) or '-'})"]
        if self.armature:
            roles = ", ".join(f"{r}={b}" for r, b in self.bones.items()) or "no head/neck/jaw bones found"
            parts.append(f"armature {self.armature.name} ({roles})")
        return "; ".join(parts)


def _root_of(obj: bpy.types.Object) -> bpy.types.Object:
    while obj.parent is not None:
        obj = obj.parent
    return obj


def _deforming_armature(ob: bpy.types.Object) -> bpy.types.Object | None:
    if ob.type != "MESH":
        return None
    mod = next((m for m in ob.modifiers if m.type == "ARMATURE" and m.object is not None), None)
    return mod.object if mod is not None else None


def _scene_objects() -> list[bpy.types.Object]:
    scene = getattr(bpy.context, "scene", None)
    return list(scene.objects) if scene is not None else list(bpy.data.objects)


def _mesh_matches(ob: bpy.types.Object) -> bool:
    key = ob.data.shape_keys if ob.type == "MESH" else None
    if key is None or len(key.key_blocks) < 2:
        return False
    names = [kb.name for kb in key.key_blocks if kb != key.reference_key]
    return mapping.count_matches(names) > 0


def find_target(obj: bpy.types.Object | None = None) -> Target:
    """The character that ``obj`` (default: the active object) belongs to.

    Walks up to the hierarchy root, finds the armature (the root itself, one under it, or the one a
    mesh's Armature modifier points at) with its head/neck/jaw bones (rig_mapping's bone templates), then collects every mesh under the
    root or skinned by that armature whose shape keys match ARKit channels (head, teeth, eyes... usually
    carry the same keys).
    """
    if obj is None:
        obj = getattr(bpy.context, "active_object", None) or getattr(bpy.context, "object", None)
    if obj is None:
        raise TargetError("no object selected: select the character's face mesh or its armature")
    root = _root_of(obj)
    family = [root, *root.children_recursive]
    if obj not in family:  # defensive: linked/instanced oddities
        family.append(obj)
    armature = next((ob for ob in family if ob.type == "ARMATURE"), None)
    if armature is None:
        for ob in family:
            arm = _deforming_armature(ob)
            if arm is not None:
                armature = arm
                break
    if armature is not None:
        # Meshes skinned by the rig but not parented to it (glTF-style rigs keep them at the root).
        for ob in _scene_objects():
            if ob not in family and _deforming_armature(ob) == armature:
                family.append(ob)
    meshes = [ob for ob in family if ob.type == "MESH" and _mesh_matches(ob)]
    bone_names = [b.name for b in armature.pose.bones] if armature is not None else []
    bones = mapping.find_bones(bone_names)
    if not meshes and not bones:
        raise TargetError(
            f"{obj.name!r} (hierarchy root {root.name!r}) has no mesh with ARKit-like shape keys "
            "(e.g. 'jawOpen', 'eyeBlink_L', 'JawOpen') and no armature with head/neck/jaw bones: select the "
            "character's face mesh or armature, or give a mapping profile for its shape-key names"
        )
    return Target(root=root, meshes=meshes, armature=armature, bones=bones, bone_names=bone_names)


def mapping_report(target: Target, profile: Any | None = None) -> mapping.MappingReport:
    """What would be written: matched ARKit channels -> shape keys/bones, unmatched channels, unused keys."""
    return mapping.report(target.shape_names, target.bone_names, profile)
