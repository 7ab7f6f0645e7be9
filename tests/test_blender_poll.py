"""Every TalkRig button that can be greyed out says why (bpy wheel, background): for each operator, in a
context where it cannot run, ``poll()`` is False and the reason - which Blender shows in the button's
tooltip and puts into the error a script gets - names the problem; fixing that one thing lets it run."""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

from blender_helpers import addon_with_demo_head, draw_panel, smooth_motion  # noqa: E402

from rig_mapping.formats import save_motion  # noqa: E402

pytestmark = pytest.mark.blender

# Generate and Re-roll wait for the same things, in this order.
GENERATE_LIKE = ("generate", "reroll")
EXPORTS = ("export_fbx", "export_gltf", "export_livelink")
NEED_CHARACTER = ("mapping_report", "save_profile", "apply", "import_livelink")


@pytest.fixture
def head():
    with addon_with_demo_head() as h:
        yield h


def _reason(name: str) -> str:
    """The poll message of a greyed-out ``bpy.ops.talkrig.<name>``, read from the error calling it raises
    (bpy has no getter for it: Blender writes it into the RuntimeError after the operator's name)."""
    op = getattr(bpy.ops.talkrig, name)
    assert not op.poll(), f"{name} should be greyed out here"
    with pytest.raises(RuntimeError) as exc:
        op()
    head = f"Operator bpy.ops.talkrig.{name}.poll() "
    msg = str(exc.value)
    assert msg.startswith(head), msg
    reason = msg[len(head):].strip()
    assert reason and "context is incorrect" not in reason, f"{name} is greyed out without saying why: {msg}"
    return reason


def _runs(name: str) -> bool:
    return getattr(bpy.ops.talkrig, name).poll()


def _select(ob) -> None:
    bpy.context.view_layer.objects.active = ob


def _plain_cube() -> bpy.types.Object:
    ob = bpy.data.objects.new("Cube", bpy.data.meshes.new("Cube"))
    bpy.context.scene.collection.objects.link(ob)
    return ob


def test_every_operator_that_can_be_greyed_out_is_checked_here(head):
    checked = {*GENERATE_LIKE, *EXPORTS, *NEED_CHARACTER, "transcribe", "cancel", "server_check", "server_start",
               "server_stop"}
    assert set(dir(bpy.ops.talkrig)) == checked


@pytest.mark.parametrize("name", NEED_CHARACTER)
def test_character_operators_say_what_to_select(head, name):
    _select(None)
    assert "No object selected: select the character's face mesh or its armature" in _reason(name)
    _select(_plain_cube())
    reason = _reason(name)
    assert "'Cube'" in reason and "no mesh with ARKit-like shape keys" in reason
    _select(head.armature)  # the armature finds the face mesh it deforms
    assert _runs(name)


@pytest.mark.parametrize("name", GENERATE_LIKE)
def test_generate_says_what_is_missing_one_thing_at_a_time(head, name, tmp_path):
    s = bpy.context.scene.talkrig
    _select(None)
    s.running = True
    assert "A generate job is running (wait for it, or Cancel it)" in _reason(name)
    s.running, s.transcribing = False, True
    assert "A transcribe job is running" in _reason(name)
    s.transcribing = False
    assert "No object selected" in _reason(name)
    _select(head.mesh)
    assert "No audio chosen: set the Audio file" in _reason(name)
    s.audio_source = "STRIP"
    assert "No sound strip chosen" in _reason(name)
    s.audio_source, s.audio_path = "FILE", str(tmp_path / "line.wav")
    assert "No motion server connected: press Connect or Start local server" in _reason(name)
    bpy.context.preferences.addons["blender_addon"].preferences.auto_start = True  # one would be started
    assert _runs(name)
    bpy.context.preferences.addons["blender_addon"].preferences.auto_start = False
    s.server_ok = True  # what Connect sets when the server answers
    assert _runs(name)


def test_transcribe_needs_audio_and_a_server(head, tmp_path):
    s = bpy.context.scene.talkrig
    assert "No audio chosen" in _reason("transcribe")
    s.audio_path = str(tmp_path / "line.wav")
    assert "No motion server connected" in _reason("transcribe")
    s.server_ok = True
    assert _runs("transcribe")


def test_a_remote_server_with_online_access_off_says_how_to_allow_it(head, tmp_path):
    s = bpy.context.scene.talkrig
    s.audio_path, s.server_ok = str(tmp_path / "line.wav"), True
    prefs = bpy.context.preferences
    prefs.addons["blender_addon"].preferences.server_address = "tcp://192.0.2.7:5557"
    was = prefs.system.use_online_access
    try:
        prefs.system.use_online_access = False
        for name in ("server_check", "generate", "transcribe"):
            reason = _reason(name)
            assert "Online access is off and the server tcp://192.0.2.7:5557 is not on this computer" in reason
            assert "Preferences > System > Network" in reason
        assert "tcp://192.0.2.7:5557 is not on this computer; a local server binds 127.0.0.1" in _reason("server_start")
        prefs.system.use_online_access = True
        assert _runs("server_check") and _runs("generate") and _runs("transcribe")
        assert not _runs("server_start")  # online or not, a local server cannot bind a remote address
    finally:
        prefs.system.use_online_access = was


def test_server_start_and_stop_say_whether_a_local_server_runs(head):
    assert "No local server was started from this Blender session" in _reason("server_stop")
    assert _runs("server_start")  # the default address is this computer's


def test_cancel_is_greyed_out_with_nothing_to_cancel(head):
    s = bpy.context.scene.talkrig
    assert "No generate or transcribe job is running" in _reason("cancel")
    s.transcribing = True  # a job flag: Cancel runs (and clears a flag left without a job)
    assert _runs("cancel")
    assert bpy.ops.talkrig.cancel() == {"CANCELLED"} and not s.transcribing


@pytest.mark.parametrize("name", EXPORTS)
def test_exports_say_there_is_nothing_to_export(head, name, tmp_path):
    _select(None)
    assert "No object selected" in _reason(name)
    _select(head.mesh)
    assert f"{head.mesh.name} has no animation to export: Generate, Apply or import a take first" in _reason(name)
    take = save_motion(smooth_motion(10), tmp_path / "take.npz")
    assert bpy.ops.talkrig.apply(filepath=str(take), start_frame=1) == {"FINISHED"}
    assert _runs(name)


def test_the_target_panel_states_the_reason_its_greyed_buttons_give(head):
    from blender_addon.ui import TALKRIG_PT_target

    _select(None)
    drawn = " ".join(draw_panel(TALKRIG_PT_target, bpy.context))
    assert _reason("mapping_report") in drawn and "op:talkrig.mapping_report" in drawn
    _select(head.mesh)
    assert head.mesh.name in draw_panel(TALKRIG_PT_target, bpy.context)
