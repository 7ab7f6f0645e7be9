"""Low-level Action writing/reading that works on Blender 4.2 to 5.x.

Blender 4.4 introduced slotted (layered) Actions and 5.0 removed the legacy ``Action.fcurves``; 4.2/4.3
only have the legacy API. Everything version-specific lives here so the rest of the add-on talks in
"container with .fcurves" terms.

Curves are written in bulk (``keyframe_points.add`` + ``foreach_set``): per-key ``keyframe_insert`` is
two orders of magnitude slower for 52 channels x thousands of frames.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import bpy
import numpy as np

HAS_SLOTS = "slots" in bpy.types.Action.bl_rna.properties
OWNER_TAG = "talkrig"  # custom property marking Actions TalkRig created (so we never touch the user's)

_INTERP = ("LINEAR", "CONSTANT", "BEZIER")


def _interp_value(name: str) -> int:
    return bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[name].value


def is_ours(action: bpy.types.Action | None) -> bool:
    return action is not None and bool(action.get(OWNER_TAG, False))


def _animated_ids(objects: Iterable[bpy.types.Object]) -> Iterable[bpy.types.ID]:
    """Each object's shape keys (a mesh's face animation lives there), then the object itself."""
    for ob in objects:
        if ob.type == "MESH" and ob.data.shape_keys is not None:
            yield ob.data.shape_keys
        yield ob


def active_take(objects: Iterable[bpy.types.Object], ours_only: bool = False) -> bpy.types.Action | None:
    """The Action assigned to the first of ``objects`` that has one (shape keys before the object);
    ``ours_only``: only a take TalkRig wrote."""
    for idb in _animated_ids(objects):
        ad = idb.animation_data
        if ad is not None and ad.action is not None and (is_ours(ad.action) or not ours_only):
            return ad.action
    return None


def has_animation(objects: Iterable[bpy.types.Object]) -> bool:
    """Whether any of ``objects`` is animated: an assigned Action or an NLA track."""
    return any(ad is not None and (ad.action is not None or len(ad.nla_tracks) > 0)
               for ad in (idb.animation_data for idb in _animated_ids(objects)))


def new_action(name: str, meta: dict[str, Any] | None = None) -> bpy.types.Action:
    """A fresh Action tagged as TalkRig's, with a fake user so an unassigned take is never lost on save."""
    action = bpy.data.actions.new(name)
    action[OWNER_TAG] = True
    for k, v in (meta or {}).items():
        if isinstance(v, (int, float, str)):
            action[f"{OWNER_TAG}_{k}"] = v
    action.use_fake_user = True
    return action


def id_type_of(idblock: bpy.types.ID) -> str:
    """The RNA id-type enum name ('OBJECT', 'KEY', ...) of a datablock."""
    return idblock.id_type


def channels_for(action: bpy.types.Action, idblock: bpy.types.ID, slot_name: str | None = None) -> tuple[Any, Any]:
    """(slot or None, container with ``.fcurves``/``.groups``) for ``idblock`` in ``action``.

    Slotted: one slot per animated datablock (a Key per mesh, the armature Object), all in one layer and
    one keyframe strip so exporters see one clip. Legacy: the Action itself is the container.
    """
    if not HAS_SLOTS:
        return None, action
    name = slot_name or idblock.name
    slot = None
    for s in action.slots:
        if s.target_id_type == id_type_of(idblock) and s.name_display == name:
            slot = s
            break
    if slot is None:
        slot = action.slots.new(id_type=id_type_of(idblock), name=name)
    if len(action.layers) == 0:
        layer = action.layers.new("TalkRig")
    else:
        layer = action.layers[0]
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return slot, strip.channelbag(slot, ensure=True)


def new_fcurve(container: Any, data_path: str, index: int = 0, group: str = "") -> bpy.types.FCurve:
    existing = container.fcurves.find(data_path, index=index)
    if existing is not None:
        container.fcurves.remove(existing)
    if not HAS_SLOTS:
        return container.fcurves.new(data_path, index=index, action_group=group)
    try:
        return container.fcurves.new(data_path, index=index, group_name=group)
    except TypeError:  # Blender 4.4: channelbag F-curves have no group argument yet
        fc = container.fcurves.new(data_path, index=index)
        if group:
            grp = container.groups.get(group) if hasattr(container.groups, "get") else None
            fc.group = grp or container.groups.new(group)
        return fc


def write_keys(fcurve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray, interpolation: str = "LINEAR") -> None:
    """Replace ``fcurve``'s keys with (frames[i], values[i]) in one bulk call."""
    if interpolation not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}")
    n = len(frames)
    if len(values) != n:
        raise ValueError(f"{fcurve.data_path}: {n} frames but {len(values)} values")
    kp = fcurve.keyframe_points
    if len(kp):
        kp.clear()
    kp.add(n)
    co = np.empty(2 * n, np.float32)
    co[0::2] = frames
    co[1::2] = values
    kp.foreach_set("co", co)
    # Interpolation for every key at once (an enum is written through its integer value).
    kp.foreach_set("interpolation", np.full(n, _interp_value(interpolation), np.int32))
    fcurve.update()  # sorts keys and recomputes handles


def assign(idblock: bpy.types.ID, action: bpy.types.Action, slot: Any) -> None:
    ad = idblock.animation_data or idblock.animation_data_create()
    ad.action = action
    if HAS_SLOTS and slot is not None:
        ad.action_slot = slot


def push_to_nla(idblock: bpy.types.ID, track_name: str) -> bpy.types.NlaTrack | None:
    """Move the datablock's current Action (kept intact) into a new NLA track; returns the track."""
    ad = idblock.animation_data
    if ad is None or ad.action is None:
        return None
    action = ad.action
    slot = ad.action_slot if HAS_SLOTS else None
    action.use_fake_user = True  # keep it alive even if the strip is later deleted
    track = ad.nla_tracks.new()
    track.name = track_name
    start = int(action.frame_range[0])
    strip = track.strips.new(action.name, start, action)
    if HAS_SLOTS and slot is not None:
        strip.action_slot = slot
    ad.action = None
    return track


def add_nla_strip(idblock: bpy.types.ID, action: bpy.types.Action, slot: Any, start: int, track_name: str) -> bpy.types.NlaStrip:
    ad = idblock.animation_data or idblock.animation_data_create()
    track = ad.nla_tracks.new()
    track.name = track_name
    strip = track.strips.new(action.name, int(start), action)
    if HAS_SLOTS and slot is not None:
        strip.action_slot = slot
    return strip


def fcurves_of(idblock: bpy.types.ID) -> Iterable[bpy.types.FCurve]:
    """The F-curves of the Action currently assigned to ``idblock`` (its own slot only)."""
    ad = idblock.animation_data
    if ad is None or ad.action is None:
        return []
    if not HAS_SLOTS:
        return list(ad.action.fcurves)
    slot = ad.action_slot
    if slot is None:
        return []
    for layer in ad.action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                return list(bag.fcurves)
    return []


def sample(fcurve: bpy.types.FCurve, frames: np.ndarray) -> np.ndarray:
    """Curve values at ``frames``: read straight from the keys when they sit exactly on those frames
    (the common case for our own takes), else evaluate."""
    kp = fcurve.keyframe_points
    n = len(kp)
    if n == len(frames) and n:
        co = np.empty(2 * n, np.float32)
        kp.foreach_get("co", co)
        if np.allclose(co[0::2], frames, atol=1e-4):
            return co[1::2].astype(np.float64)
    return np.array([fcurve.evaluate(float(f)) for f in frames], np.float64)
