"""FBX / glTF export with the options that keep shape-key animation intact.

glTF: every morph weight of a mesh is sampled on the same frames into one "weights" channel (the spec
demands all targets per keyframe), only the assigned takes are exported as one clip, and no
optimisation drops keys. FBX: one baked take over the scene range (NLA-strip and all-actions takes
off, which would split and time-shift the clip), curve simplification off so every frame survives.

Every file is written atomically (``rig_mapping.atomic``): the exporter writes a hidden temporary file
in the destination folder, which replaces the destination only once it is complete, so a crash or a
kill mid-export never destroys the previous file. A ``.gltf`` and its ``.bin`` are written in a hidden
temporary folder there and moved into place, the ``.bin`` first.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import bpy

from rig_mapping import atomic

from . import anim


class ExportError(RuntimeError):
    """Export refused or failed; the message says why and what to do."""


def _check_path(path: str | Path, overwrite: bool, suffixes: tuple[str, ...]) -> Path:
    p = Path(bpy.path.abspath(str(path))).resolve()
    if p.suffix.lower() not in suffixes:
        raise ExportError(f"{p.name}: expected a file ending in {' or '.join(suffixes)}")
    if p.exists() and not overwrite:
        raise ExportError(f"{p} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not p.parent.is_dir():
        raise ExportError(f"folder {p.parent} does not exist; create it first")
    return p


def _with_family(objects: Iterable[bpy.types.Object]) -> list[bpy.types.Object]:
    """The objects plus their armatures/children, so a rigged character exports whole."""
    out: dict[str, bpy.types.Object] = {}
    for ob in objects:
        out[ob.name] = ob
        for child in ob.children_recursive:
            if child.type in {"MESH", "ARMATURE"}:
                out[child.name] = child
        if ob.type == "MESH":
            for m in ob.modifiers:
                if m.type == "ARMATURE" and m.object is not None:
                    out[m.object.name] = m.object
        if ob.parent is not None and ob.parent.type == "ARMATURE":
            out[ob.parent.name] = ob.parent
    return list(out.values())


class _Selection:
    """Select exactly ``objects`` for a ``use_selection`` export, then restore the user's selection."""

    def __init__(self, objects: list[bpy.types.Object]) -> None:
        self.objects = objects

    def __enter__(self) -> _Selection:
        vl = bpy.context.view_layer
        self.prev = [o for o in vl.objects if o.select_get()]
        self.prev_active = vl.objects.active
        self.hidden = []
        for o in vl.objects:
            o.select_set(False)
        for o in self.objects:
            if o.name not in vl.objects:
                raise ExportError(f"{o.name!r} is not in the current view layer; link it to the scene first")
            if o.hide_get():
                self.hidden.append(o)
                o.hide_set(False)
            o.select_set(True)
        if self.objects:
            vl.objects.active = self.objects[0]
        return self

    def __exit__(self, *exc: Any) -> None:
        vl = bpy.context.view_layer
        for o in self.hidden:
            o.hide_set(True)
        for o in vl.objects:
            o.select_set(False)
        for o in self.prev:
            if o.name in vl.objects:
                o.select_set(True)
        vl.objects.active = self.prev_active


class _PinnedBasis:
    """Show only the Basis shape key on the exported meshes while the exporters step through frames.

    Both exporters sample by ``frame_set`` per frame and read shape-key *values* (the Key datablock is
    still animated); geometry comes from the original mesh data. Mixing 50+ keys over a dense mesh on
    every frame is wasted work that dominates export time (measured 23 ms -> 4 ms per frame on the demo
    head, identical files). Restored afterwards.
    """

    def __init__(self, objects: list[bpy.types.Object] | None) -> None:
        pool = objects if objects is not None else list(bpy.context.scene.objects)
        self.meshes = [o for o in pool if o.type == "MESH" and o.data.shape_keys is not None]

    def __enter__(self) -> _PinnedBasis:
        self.saved = [(o, o.show_only_shape_key, o.active_shape_key_index) for o in self.meshes]
        for o in self.meshes:
            o.show_only_shape_key = True
            o.active_shape_key_index = 0
        return self

    def __exit__(self, *exc: Any) -> None:
        for o, pinned, index in self.saved:
            o.show_only_shape_key = pinned
            o.active_shape_key_index = index


def _resolve_objects(objects: Iterable[bpy.types.Object] | None) -> list[bpy.types.Object] | None:
    if objects is None:
        return None
    objs = _with_family(objects)
    if not objs:
        raise ExportError("nothing to export: the object list is empty")
    return objs


def export_gltf(
    path: str | Path,
    objects: Iterable[bpy.types.Object] | None = None,
    overwrite: bool = False,
    clip_name: str | None = None,
    **options: Any,
) -> Path:
    """Write .glb (binary) or .gltf (JSON + .bin); ``objects=None`` exports the whole scene.

    The assigned takes become one animation named ``clip_name`` (default: the active Action's name).
    Extra keyword options go to ``bpy.ops.export_scene.gltf`` unchanged.
    """
    p = _check_path(path, overwrite, (".glb", ".gltf"))
    objs = _resolve_objects(objects)
    if clip_name is None:
        take = anim.active_take(objs if objs is not None else bpy.context.scene.objects)
        clip_name = take.name if take is not None else "Animation"
    kw: dict[str, Any] = dict(
        filepath=str(p),
        export_format="GLB" if p.suffix.lower() == ".glb" else "GLTF_SEPARATE",
        use_selection=objs is not None,
        export_apply=False,  # applying modifiers would drop shape keys
        export_animations=True,
        export_animation_mode="ACTIVE_ACTIONS",  # the assigned takes -> ONE glTF animation
        export_nla_strips_merged_animation_name=clip_name,
        export_morph=True,
        export_morph_normal=True,
        export_morph_animation=True,
        export_force_sampling=True,  # all morph weights sampled on the same frames
        export_frame_step=1,
        # The take's first frame (where its sound strip starts) becomes t = 0, so audio started with the
        # clip in an engine stays in sync.
        export_anim_slide_to_zero=True,
        export_optimize_animation_size=False,  # never drop "redundant" keys
        export_def_bones=False,
        export_skins=True,
        export_yup=True,
    )
    kw.update(options)
    # .gltf: the exporter names the .bin after the file and writes its name into the JSON, so it must
    # see the final name: it writes into a temporary folder and both files are moved into place.
    group = p.suffix.lower() == ".gltf"
    _write_atomic("glTF", p, overwrite, bpy.ops.export_scene.gltf, kw, objs, group)
    return p


def export_fbx(
    path: str | Path,
    objects: Iterable[bpy.types.Object] | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Write .fbx with one baked take over the scene frame range (shape keys as DeformPercent curves)."""
    p = _check_path(path, overwrite, (".fbx",))
    objs = _resolve_objects(objects)
    kw: dict[str, Any] = dict(
        filepath=str(p),
        use_selection=objs is not None,
        object_types={"ARMATURE", "MESH", "EMPTY"},
        use_mesh_modifiers=False,  # modifiers would be applied and shape keys dropped
        add_leaf_bones=False,
        bake_anim=True,
        bake_anim_use_all_bones=True,
        bake_anim_use_nla_strips=False,  # one coherent take over the scene range
        bake_anim_use_all_actions=False,
        bake_anim_force_startend_keying=True,
        bake_anim_step=1.0,
        bake_anim_simplify_factor=0.0,  # 0 disables simplification: every frame is kept
        axis_forward="-Z",
        axis_up="Y",
    )
    kw.update(options)
    _write_atomic("FBX", p, overwrite, bpy.ops.export_scene.fbx, kw, objs, False)
    return p


def _write_atomic(label: str, p: Path, overwrite: bool, op: Any, kw: dict[str, Any],
                  objs: list[bpy.types.Object] | None, group: bool) -> None:
    """Run the exporter into a temporary file beside ``p`` and rename it over ``p`` once complete."""
    writer = atomic.atomic_output_group if group else atomic.atomic_output
    try:
        with writer(p, overwrite=overwrite) as tmp:
            kw["filepath"] = str(tmp)
            try:
                _run_exporter(label, op, kw, objs)
            except ExportError as exc:  # the user should read their file's name, not the temporary one
                msg = str(exc).replace(str(tmp), str(p))
                raise ExportError(msg.replace(str(tmp.parent), str(p.parent)) if group else msg) from exc
    except atomic.OutputError as exc:
        raise ExportError(f"{label} export: {exc}") from exc
    except FileExistsError as exc:
        raise ExportError(str(exc)) from exc


def save_blend_atomic(path: str | Path, overwrite: bool = False) -> Path:
    """Save a copy of the open file as ``path`` (.blend) atomically; the session keeps its own file name
    (``copy=True``), so nothing later saves over the copy by accident."""
    p = _check_path(path, overwrite, (".blend",))
    try:
        with atomic.atomic_output(p, overwrite=overwrite) as tmp:
            try:
                result = bpy.ops.wm.save_as_mainfile(filepath=str(tmp), check_existing=False, copy=True)
            except RuntimeError as exc:
                raise ExportError(f"could not save {p}: {str(exc).replace(str(tmp), str(p))}") from exc
            if "FINISHED" not in result:
                raise ExportError(f"saving {p} did not finish ({result}); see Blender's console for details")
    except atomic.OutputError as exc:
        raise ExportError(str(exc)) from exc
    except FileExistsError as exc:
        raise ExportError(str(exc)) from exc
    return p


def _run_exporter(label: str, op: Any, kw: dict[str, Any], objs: list[bpy.types.Object] | None) -> None:
    try:
        with _PinnedBasis(objs):
            if objs is None:
                result = op(**kw)
            else:
                with _Selection(objs):
                    result = op(**kw)
    except (RuntimeError, TypeError) as exc:
        raise ExportError(f"{label} export failed: {exc}") from exc
    if "FINISHED" not in result:
        raise ExportError(f"{label} export did not finish ({result}); see Blender's console for details")


def default_export_path(suffix: str, take: str | None = None, folder: str | None = None) -> Path:
    """Next to the .blend (or in ``folder``), named after the .blend and the take."""
    blend = bpy.data.filepath
    base = Path(folder) if folder else (Path(blend).parent if blend else Path.cwd())
    stem = Path(blend).stem if blend else "talkrig"
    name = f"{stem}_{take}" if take else stem
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return base / f"{safe}{suffix}"
