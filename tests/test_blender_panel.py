"""The panel's mapping controls, driven through the operators and scene settings the way the sidebar does
(bpy wheel, background): profiles are selectable (automatic / shipped preset / file) and editable (save the
automatic profile to a file, edit it, use it), and the mapping report is in the panel before a take is
keyed."""

from __future__ import annotations

import pytest

bpy = pytest.importorskip("bpy")

from blender_helpers import addon_with_demo_head, smooth_motion  # noqa: E402

from blender_addon.core import anim  # noqa: E402
from rig_mapping.formats import save_motion  # noqa: E402

pytestmark = pytest.mark.blender


@pytest.fixture
def head():
    with addon_with_demo_head() as h:
        yield h


def test_profile_is_selectable_from_the_shipped_presets(head):
    s = bpy.context.scene.talkrig
    from blender_addon.properties import _profile_presets

    items = [i[0] for i in _profile_presets(s, bpy.context)]
    assert items[0] == "AUTO" and items[-1] == "FILE" and {"arkit", "suffix_lr", "vrm"} <= set(items)
    assert s.profile_preset == "AUTO" and s.profile == ""
    assert bpy.ops.talkrig.mapping_report() == {"FINISHED"}
    auto_report = s.report
    assert "51/52 ARKit channels matched" in auto_report
    s.profile_preset = "arkit"  # camelCase names only: the demo head's _L/_R keys mostly do not match
    assert s.profile == "arkit"
    assert bpy.ops.talkrig.mapping_report() == {"FINISHED"}
    assert s.report != auto_report and "unmatched:" in s.report
    s.profile_preset = "AUTO"
    assert s.profile == ""


def test_saved_profile_is_editable_and_used(head, tmp_path):
    s = bpy.context.scene.talkrig
    path = tmp_path / "my_rig.toml"
    assert bpy.ops.talkrig.save_profile(filepath=str(path)) == {"FINISHED"}
    assert path.is_file() and s.profile == str(path) and s.profile_preset == "FILE"
    # the user edits the file: drop the jawOpen line, then re-checks the mapping
    text = path.read_text()
    assert '\njawOpen = "jawOpen"\n' in text
    path.write_text(text.replace('\njawOpen = "jawOpen"\n', "\n"))
    assert bpy.ops.talkrig.mapping_report() == {"FINISHED"}
    assert "jawOpen" in s.report.split("unmatched:")[1].split("\n")[0]
    # and keying with it leaves jawOpen alone
    take = save_motion(smooth_motion(30), tmp_path / "take.npz")
    assert bpy.ops.talkrig.apply(filepath=str(take), start_frame=1) == {"FINISHED"}
    keyed = {fc.data_path for fc in anim.fcurves_of(head.mesh.data.shape_keys)}
    assert 'key_blocks["jawOpen"].value' not in keyed and 'key_blocks["mouthClose"].value' in keyed
    # saving never replaces the edited file unless asked
    with pytest.raises(RuntimeError, match="exists"):
        bpy.ops.talkrig.save_profile(filepath=str(path))
    assert '\njawOpen = "jawOpen"\n' not in path.read_text()


def test_mapping_report_is_in_the_panel_before_a_take_is_keyed(head, tmp_path):
    s = bpy.context.scene.talkrig
    assert s.report == ""
    take = save_motion(smooth_motion(30), tmp_path / "take.npz")
    assert bpy.ops.talkrig.apply(filepath=str(take), start_frame=1) == {"FINISHED"}
    assert "51/52 ARKit channels matched" in s.report and "TalkRigHead" in s.report


def test_exports_land_next_to_the_blend_by_default(head, tmp_path):
    """Export buttons run synchronously (background mode has no file browser): with no path they write next
    to the saved .blend, named after it and the take; never over an existing file; the preferences' export
    folder wins when set."""
    blend = tmp_path / "scene" / "char.blend"
    blend.parent.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    take = save_motion(smooth_motion(30), tmp_path / "hello.npz")
    assert bpy.ops.talkrig.apply(filepath=str(take), start_frame=1) == {"FINISHED"}
    for op, suffix in (("export_gltf", ".glb"), ("export_fbx", ".fbx"), ("export_livelink", ".csv")):
        assert getattr(bpy.ops.talkrig, op)() == {"FINISHED"}
        out = blend.parent / f"char_hello{suffix}"
        assert out.is_file() and out.stat().st_size > 0, op
        before = out.stat().st_mtime_ns
        with pytest.raises(RuntimeError, match="exists"):
            getattr(bpy.ops.talkrig, op)()
        assert out.stat().st_mtime_ns == before
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.export_dir = str(tmp_path / "exports")
    (tmp_path / "exports").mkdir()
    assert bpy.ops.talkrig.export_gltf() == {"FINISHED"}
    assert (tmp_path / "exports" / "char_hello.glb").is_file()


def test_server_buttons_run_synchronously_in_background(head):
    """Start / Connect / Stop / Cancel from a script or `blender -b`: no modal, no timer, same result."""
    import sys

    from motion_server_helpers import free_port

    from blender_addon import server_link

    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.server_address = f"tcp://127.0.0.1:{free_port()}"
    prefs.python_path, prefs.engine = sys.executable, "energy"
    s = bpy.context.scene.talkrig
    try:
        assert bpy.ops.talkrig.server_start() == {"FINISHED"} and s.server_ok
        assert server_link.local_server_running()
        assert bpy.ops.talkrig.server_check() == {"FINISHED"} and "energy" in s.status
        assert not bpy.ops.talkrig.cancel.poll()  # nothing in flight: nothing to cancel
        assert bpy.ops.talkrig.server_stop() == {"FINISHED"} and not s.server_ok
        assert not server_link.local_server_running()
    finally:
        server_link.stop_local()


def test_style_preset_field_suggests_the_servers_presets(head, tmp_path):
    from motion_server_helpers import ServerProcess

    from blender_addon.properties import _style_search

    server = ServerProcess(tmp_path, engine="test_server_list:PresetsEngine")
    try:
        bpy.context.preferences.addons["blender_addon"].preferences.server_address = server.address
        assert bpy.ops.talkrig.server_check() == {"FINISHED"}
    finally:
        server.close()
    s = bpy.context.scene.talkrig
    assert _style_search(s, bpy.context, "") == ["calm", "lively"]
    assert _style_search(s, bpy.context, "LIV") == ["lively"]


def test_transcript_comes_from_the_panel_or_a_text_file_beside_the_audio(head, tmp_path):
    from blender_addon.jobs import options_from_settings

    s = bpy.context.scene.talkrig
    audio = tmp_path / "line01.wav"
    audio.write_bytes(b"")  # only its name matters here
    s.audio_source, s.audio_path, s.transcript = "FILE", str(audio), ""
    assert "transcript" not in options_from_settings(s, bpy.context.scene)
    (tmp_path / "line01.txt").write_text("Hello there, my friend.\n", encoding="utf-8")
    assert options_from_settings(s, bpy.context.scene)["transcript"] == "Hello there, my friend."
    s.transcript = "  Typed in the panel  "
    assert options_from_settings(s, bpy.context.scene)["transcript"] == "Typed in the panel"


def test_import_live_link_take_with_tracking_lost_rows(head, tmp_path):
    """The iPhone writes 'timecode,0' where it lost the face; Import Live Link keys the take anyway."""
    path = save_motion(smooth_motion(120), tmp_path / "take.csv")
    lines = path.read_text().splitlines()
    for i in range(40, 90):  # 50 frames (1.7 s) without tracking: eased to neutral and reported
        lines[i] = lines[i].split(",", 1)[0] + ",0"
    path.write_text("\n".join(lines) + "\n")
    assert bpy.ops.talkrig.import_livelink(filepath=str(path)) == {"FINISHED"}
    key = head.mesh.data.shape_keys
    assert key.animation_data.action.name == "take"


def test_generation_properties_are_built_from_the_option_table(head):
    """Limits, defaults and tooltips of the panel's generation options are the option table's; options
    unset by default (None) have a toggle, so no number means two things."""
    from motion_server.options import option

    props = bpy.context.scene.talkrig.bl_rna.properties
    for name in ("guidance", "intensity", "head_motion", "blink_rate", "seed", "steps"):
        o, p = option(name), props[name]
        lo, hi = o.range
        assert (p.hard_min, p.hard_max) == pytest.approx((lo, min(hi, 2**31 - 1))), name
        if o.soft_max is not None:
            assert p.soft_max == pytest.approx(o.soft_max), name
        assert p.default == pytest.approx(o.default if o.default is not None else o.ui_value), name
        assert p.description == o.help(), name
        assert ("use_" + name in props) == (o.default is None), name
    assert props["steps"].hard_max == 50  # the engine's limit, not 200


def test_panel_blink_rate_zero_means_no_blinks_and_unset_means_the_styles(head):
    from blender_addon.jobs import options_from_settings

    s = bpy.context.scene.talkrig
    opts = options_from_settings(s, bpy.context.scene)
    assert not {"blink_rate", "steps", "guidance"} & set(opts)  # unset: the style's / the model's own
    s.use_blink_rate, s.blink_rate = True, 0.0
    s.use_steps, s.steps = True, 2
    opts = options_from_settings(s, bpy.context.scene)
    assert opts["blink_rate"] == 0.0 and opts["steps"] == 2  # 0 is sent: no blinks
    from motion_server.protocol import validate_options

    validate_options(opts)
    # and what the server does with them: a take without a single blink
    from motion_server_helpers import speech_like_wav

    from motion_server.audio.io import load_audio
    from motion_server.engine.base import GenerateOptions
    from motion_server.model.engine import DiffusionEngine
    from motion_server.model.postprocess import blink_events

    audio = load_audio(speech_like_wav(6.0))
    eng = DiffusionEngine(device="cpu")
    none = eng.generate(audio, 16000, GenerateOptions.from_dict(opts))
    s.use_blink_rate = False
    own = eng.generate(audio, 16000, GenerateOptions.from_dict(options_from_settings(s, bpy.context.scene)))
    assert len(blink_events(none.weights)) == 0 and len(blink_events(own.weights)) >= 1
