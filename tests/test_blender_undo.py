"""Undo after the add-on writes animation (bpy wheel, background mode).

Operators called from Python push an undo step only when asked (``bpy.ops.x(..., undo=True)``, what a
button press does) and only if the operator is registered with the UNDO option; ``ed.undo`` needs an
initialised undo stack (``ed.undo_push``) and a screen in the context. With those, one Ctrl+Z after
Apply / Import Live Link must give back exactly the scene the user had: their own Action active again,
no TalkRig take left, no NLA track added."""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

from blender_helpers import addon_with_demo_head, smooth_motion  # noqa: E402

from rig_mapping.formats import save_motion  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture
def head_with_user_action():
    with addon_with_demo_head() as head:
        kb = head.mesh.data.shape_keys.key_blocks["mouthSmile_L"]
        kb.value = 0.7
        kb.keyframe_insert("value", frame=1)
        head.mesh.data.shape_keys.animation_data.action.name = "UserSmile"
        yield head.mesh.name


def _state(mesh_name: str) -> tuple[str | None, list[str], int]:
    key = bpy.data.objects[mesh_name].data.shape_keys  # re-fetched: undo replaces the datablocks
    ad = key.animation_data
    return (ad.action.name if ad and ad.action else None, sorted(a.name for a in bpy.data.actions),
            len(ad.nla_tracks) if ad else 0)


def _undo(redo: bool = False) -> set[str]:
    w = bpy.context.window_manager.windows[0]
    with bpy.context.temp_override(window=w, screen=w.screen):
        return bpy.ops.ed.redo() if redo else bpy.ops.ed.undo()


@pytest.mark.parametrize("operator", ["apply", "import_livelink"])
def test_one_undo_restores_the_scene_before_the_take(head_with_user_action, operator, tmp_path):
    mesh = head_with_user_action
    suffix = ".npz" if operator == "apply" else ".csv"
    path = save_motion(smooth_motion(30), tmp_path / f"take{suffix}")
    bpy.ops.ed.undo_push(message="before TalkRig")  # initialises the undo stack (off at startup headless)
    before = _state(mesh)
    assert before == ("UserSmile", ["UserSmile"], 0)

    kwargs = {"filepath": str(path)} | ({"start_frame": 1} if operator == "apply" else {})
    op = getattr(bpy.ops.talkrig, operator)
    assert op("EXEC_DEFAULT", True, **kwargs) == {"FINISHED"}  # undo=True: as from a button
    after = _state(mesh)
    assert after[0] == "take" and "take" in after[1] and after[2] == 1  # user's Action moved to an NLA track

    assert _undo() == {"FINISHED"}
    assert _state(mesh) == before
    assert _undo(redo=True) == {"FINISHED"}
    assert _state(mesh) == after
