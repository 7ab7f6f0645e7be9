"""blender_addon.core on the demo head (ICT face, 53 `_L/_R` shape keys, root/neck/head/jaw armature),
headless with the bpy wheel. One character is built per module and saved; each test reopens it."""

from __future__ import annotations

import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_helpers import glb_accessor, glb_json, run_gltf_validator, smooth_motion  # noqa: E402

from blender_addon.core import anim, apply, export, livelink, readback  # noqa: E402
from blender_addon.core.demo_head import build_demo_head  # noqa: E402
from blender_addon.core.target import TargetError, find_target, mapping_report  # noqa: E402

pytestmark = pytest.mark.blender

USER_JAW = [(1.0, 0.3), (10.0, 0.6)]  # the user's own jawOpen keys, which must survive


def _kb_path(name: str) -> str:
    return f'key_blocks["{name}"].value'


@pytest.fixture(scope="module")
def character_blend(tmp_path_factory) -> str:
    """Demo head at 30 fps whose Key already has a user Action (jawOpen keyed by hand)."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    head = build_demo_head()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    kb = head.mesh.data.shape_keys.key_blocks["jawOpen"]
    for frame, value in USER_JAW:
        kb.value = value
        kb.keyframe_insert("value", frame=int(frame))
    head.mesh.data.shape_keys.animation_data.action.name = "UserFace"
    path = tmp_path_factory.mktemp("blend") / "character.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return str(path)


@pytest.fixture
def character(character_blend):
    bpy.ops.wm.open_mainfile(filepath=character_blend)
    mesh = bpy.data.objects["TalkRigHead"]
    return find_target(mesh)


def _user_keys() -> list[tuple[float, float]]:
    act = bpy.data.actions["UserFace"]
    fcs = [fc for layer in act.layers for strip in layer.strips for bag in strip.channelbags for fc in bag.fcurves] \
        if anim.HAS_SLOTS else list(act.fcurves)
    (fc,) = [fc for fc in fcs if fc.data_path == _kb_path("jawOpen")]
    return [tuple(kp.co) for kp in fc.keyframe_points]


def test_find_target_reports_mapping_before_writing(character):
    assert [o.name for o in character.meshes] == ["TalkRigHead"]
    assert character.armature.name == "TalkRigHead_Rig"
    assert character.bones == {"head": "head", "neck": "neck", "jaw": "jaw"}
    n_actions = len(bpy.data.actions)
    report = mapping_report(character)
    assert len(bpy.data.actions) == n_actions, "the report must not write anything"
    assert report.unmatched == ["tongueOut"]  # ICT has no tongue shape
    assert report.matched["browInnerUp"] == ["browInnerUp_L", "browInnerUp_R"]  # split channel fans out
    assert report.matched["eyeBlinkLeft"] == ["eyeBlink_L"]
    assert set(report.head_targets["pitch"]) == {"head", "neck"}
    # Selecting the armature or the mesh finds the same character.
    assert find_target(character.armature).meshes == character.meshes


def test_target_errors_name_the_fix(character):
    empty = bpy.data.objects.new("Lamp", None)
    bpy.context.scene.collection.objects.link(empty)
    with pytest.raises(TargetError, match="select the character"):
        find_target(empty)


def test_apply_writes_new_take_and_keeps_user_action(character):
    motion = smooth_motion(60)
    before = _user_keys()
    created = apply.apply_motion(motion, character, start_frame=1)
    key = character.keys[0]
    take = key.animation_data.action
    assert take.name == "hello" and anim.is_ours(take)
    assert set(created) == {f"KEY:{key.name}", "OBJECT:TalkRigHead_Rig"}
    # The user's Action is untouched and still plays from an NLA track under ours.
    assert _user_keys() == before
    tracks = [t for t in key.animation_data.nla_tracks]
    assert [t.strips[0].action.name for t in tracks] == ["UserFace"]
    if anim.HAS_SLOTS:
        assert {s.target_id_type for s in take.slots} == {"KEY", "OBJECT"}
        assert key.animation_data.action_slot.target_id_type == "KEY"
    # Every channel keyed on the same frames, values = the motion mapped by the profile.
    fcs = {fc.data_path: fc for fc in anim.fcurves_of(key)}
    assert len(fcs) == 53
    frames = np.arange(1, 61)
    for fc in fcs.values():
        co = np.empty(2 * len(fc.keyframe_points), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        np.testing.assert_array_equal(co[0::2], frames)
    np.testing.assert_allclose(anim.sample(fcs[_kb_path("jawOpen")], frames), motion.channel("jawOpen"), atol=1e-6)
    np.testing.assert_allclose(anim.sample(fcs[_kb_path("browInnerUp_R")], frames), motion.channel("browInnerUp"),
                               atol=1e-6)
    np.testing.assert_allclose(anim.sample(fcs[_kb_path("eyeBlink_L")], frames), motion.channel("eyeBlinkLeft"),
                               atol=1e-6)
    # Evaluated scene: the shape key and the head bone follow the take.
    scene = bpy.context.scene
    scene.frame_set(21)
    assert key.key_blocks["jawOpen"].value == pytest.approx(float(motion.channel("jawOpen")[20]), abs=1e-5)
    q = character.armature.pose.bones["head"].rotation_quaternion
    pitch = q.to_euler("XYZ").x
    assert pitch == pytest.approx(0.6 * float(motion.head[20, 0]), abs=1e-4)  # 60% on head, 40% on neck


def test_apply_follows_scene_fps_range_and_sound(character, tmp_path):
    sf = pytest.importorskip("soundfile")
    audio = tmp_path / "line.wav"
    sf.write(audio, np.zeros(32000, np.float32), 16000)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    motion = smooth_motion(60, fps=30)  # 2 s
    apply.apply_motion(motion, character, start_frame=10, audio_path=audio)
    key = character.keys[0]
    fc = next(fc for fc in anim.fcurves_of(key) if fc.data_path == _kb_path("jawOpen"))
    assert len(fc.keyframe_points) == 48  # 2 s at 24 fps
    assert (scene.frame_start, scene.frame_end) == (10, 57)
    # Same curve in time: the value at t seconds matches the 30 fps source at t.
    t = np.arange(48) / 24.0
    expect = np.interp(t, np.arange(60) / 30.0, motion.channel("jawOpen"))
    np.testing.assert_allclose(anim.sample(fc, 10 + np.arange(48)), expect, atol=1e-5)
    strips = [s for s in scene.sequence_editor.strips_all if s.type == "SOUND"]
    assert len(strips) == 1 and int(strips[0].frame_start) == 10
    assert scene.sync_mode == "AUDIO_SYNC"
    # Applying again with the same audio reuses the strip; the first take is kept, not overwritten.
    apply.apply_motion(motion, character, start_frame=10, audio_path=audio)
    assert len([s for s in scene.sequence_editor.strips_all if s.type == "SOUND"]) == 1
    takes = sorted(a.name for a in bpy.data.actions if anim.is_ours(a))
    assert takes == ["line", "line.001"]


def test_as_nla_leaves_the_active_action(character):
    key = character.keys[0]
    apply.apply_motion(smooth_motion(30), character, start_frame=40, as_nla=True)
    assert key.animation_data.action.name == "UserFace"
    strip = key.animation_data.nla_tracks[-1].strips[0]
    assert strip.action.name == "hello" and int(strip.frame_start) == 40


def test_a_minute_of_52_channels_is_keyed_whole(character):
    """52 channels x 1 minute at 30 fps, including profile evaluation and the head bones: every frame is
    keyed with the motion's value (how fast: `python -m blender_addon.bench`, not a test)."""
    motion = smooth_motion(1800)
    apply.apply_motion(motion, character)
    frames = np.arange(1, 1801)
    fc = next(fc for fc in anim.fcurves_of(character.keys[0]) if fc.data_path == _kb_path("jawOpen"))
    assert len(fc.keyframe_points) == 1800
    np.testing.assert_allclose(anim.sample(fc, frames), motion.channel("jawOpen"), atol=1e-6)


def test_livelink_round_trip(character, tmp_path):
    from rig_mapping.formats import load_motion, save_motion

    src = tmp_path / "take.csv"
    save_motion(smooth_motion(90, seed=3), src)
    original = load_motion(src)
    livelink.import_livelink_csv(src, character, start_frame=1)
    assert character.keys[0].animation_data.action.name == "take"
    out = livelink.export_livelink_csv(tmp_path / "back.csv", character, frame_start=1, frame_end=90)
    back = load_motion(out)
    assert back.n_frames == original.n_frames and back.fps == original.fps
    np.testing.assert_allclose(back.weights, original.weights, atol=2e-5)
    np.testing.assert_allclose(back.head[:, :3], original.head[:, :3], atol=2e-5)
    with pytest.raises(FileExistsError):
        livelink.export_livelink_csv(out, character)


def test_readback_of_untouched_channels_is_neutral(character):
    apply.apply_motion(smooth_motion(20), character)
    m = readback.motion_from_character(character, frame_start=1, frame_end=20)
    assert np.all(m.channel("tongueOut") == 0)


# -- export ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(character_blend, tmp_path_factory):
    """One animated take exported once to .glb and .fbx (exports of the 26k-vertex head take seconds)."""
    bpy.ops.wm.open_mainfile(filepath=character_blend)
    target = find_target(bpy.data.objects["TalkRigHead"])
    motion = smooth_motion(45)
    apply.apply_motion(motion, target, start_frame=1)
    key = target.keys[0]
    frames = np.arange(1, 46)
    values = {fc.data_path: anim.sample(fc, frames) for fc in anim.fcurves_of(key)}
    d = tmp_path_factory.mktemp("export")
    bpy.context.scene.frame_set(20)  # a frame where the face is far from neutral
    target.meshes[0].active_shape_key_index = 7  # the user's UI state, which export must restore
    basis = np.empty(len(key.reference_key.data) * 3, np.float32)
    key.reference_key.data.foreach_get("co", basis)
    basis = basis.reshape(-1, 3)[:, [0, 2, 1]] * np.array([1, 1, -1], np.float32)  # Blender Z-up -> glTF Y-up
    glb = export.export_gltf(d / "take.glb", target.objects)
    fbx = export.export_fbx(d / "take.fbx", target.objects)
    shape_names = [kb.name for kb in key.key_blocks][1:]
    mesh = target.meshes[0]
    return {"glb": glb, "fbx": fbx, "values": values, "frames": frames, "shape_names": shape_names,
            "motion": motion, "basis": basis,
            "pin_after": (mesh.show_only_shape_key, mesh.active_shape_key_index)}


def test_gltf_passes_validator_and_carries_morph_animation(exported):
    glb = exported["glb"]
    report = run_gltf_validator(glb)
    if report is None:
        pytest.skip("Khronos glTF-Validator not installed (node + `npm install` in the repo, scripts/setup.sh)")
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"][:5]
    js = glb_json(glb)
    (mesh,) = js["meshes"]
    names = mesh["extras"]["targetNames"]
    assert names == exported["shape_names"]
    (anim_js,) = js["animations"]
    assert anim_js["name"] == "hello"
    mesh_node = next(i for i, n in enumerate(js["nodes"]) if n.get("mesh") == 0)
    (wch,) = [c for c in anim_js["channels"] if c["target"]["path"] == "weights"]
    assert wch["target"]["node"] == mesh_node
    sampler = anim_js["samplers"][wch["sampler"]]
    times = glb_accessor(glb, js, sampler["input"])
    out = glb_accessor(glb, js, sampler["output"])
    n_frames = len(exported["frames"])
    assert len(times) == n_frames and out.size == n_frames * len(names)  # all targets for every keyframe
    weights = out.reshape(n_frames, len(names))
    j = names.index("jawOpen")
    np.testing.assert_allclose(weights[:, j], exported["values"]['key_blocks["jawOpen"].value'], atol=1e-5)
    np.testing.assert_allclose(times, (exported["frames"] - 1) / 30.0, atol=1e-4)
    # The rest geometry is the Basis (not the expression at the current frame), and the export left
    # the user's shape-key display settings as they were.
    pos = js["accessors"][mesh["primitives"][0]["attributes"]["POSITION"]]
    np.testing.assert_allclose(pos["min"], exported["basis"].min(axis=0), atol=1e-5)
    np.testing.assert_allclose(pos["max"], exported["basis"].max(axis=0), atol=1e-5)
    assert exported["pin_after"] == (False, 7)
    # The head bone turns in the same clip.
    head_node = next(i for i, n in enumerate(js["nodes"]) if n.get("name") == "head")
    assert any(c["target"] == {"node": head_node, "path": "rotation"} for c in anim_js["channels"])


def test_fbx_reimports_with_shape_key_animation(exported):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.fbx(filepath=str(exported["fbx"]), anim_offset=0)
    (mesh,) = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    fcs = {fc.data_path: fc for fc in anim.fcurves_of(mesh.data.shape_keys)}
    assert len(fcs) == len(exported["shape_names"])
    for path, values in exported["values"].items():
        np.testing.assert_allclose(anim.sample(fcs[path], exported["frames"]), values, atol=1e-4, err_msg=path)


def test_export_never_overwrites(exported):
    with pytest.raises(export.ExportError, match="already exists"):
        export.export_fbx(exported["fbx"], None)
    with pytest.raises(export.ExportError, match="already exists"):
        export.export_gltf(exported["glb"], None)


def test_gltf_with_its_buffer_and_a_blend_copy_are_written_atomically(character_blend, tmp_path):
    """The .gltf exporter writes a .bin named after the file and puts that name in the JSON: both are
    written in a temporary folder and moved into place, so the .gltf points at its own buffer."""
    from rig_mapping.atomic import is_temp_name

    bpy.ops.wm.open_mainfile(filepath=character_blend)
    target = find_target(bpy.data.objects["TalkRigHead"])
    apply.apply_motion(smooth_motion(10), target, start_frame=1)
    (tmp_path / "take.gltf").write_text("{}")  # an earlier export, replaced with --overwrite
    (tmp_path / "take.bin").write_bytes(b"old buffer")
    p = export.export_gltf(tmp_path / "take.gltf", target.objects, overwrite=True)
    js = json.loads(p.read_text())
    assert [b["uri"] for b in js["buffers"]] == ["take.bin"]
    assert (tmp_path / "take.bin").stat().st_size == js["buffers"][0]["byteLength"]
    blend = export.save_blend_atomic(tmp_path / "scene.blend")
    assert blend.stat().st_size > 100_000 and bpy.data.filepath == character_blend  # a copy: session unchanged
    assert sorted(f.name for f in tmp_path.iterdir()) == ["scene.blend", "take.bin", "take.gltf"]
    with pytest.raises(export.ExportError, match="already exists"):
        export.save_blend_atomic(blend)
    assert not any(is_temp_name(f.name) for f in tmp_path.iterdir())


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_rig_mapping_rotations_match_mathutils(order):
    """The add-on keys bones with rig_mapping.rotation (numpy); Blender's own maths must agree."""
    from mathutils import Euler, Quaternion

    from rig_mapping import rotation

    rng = np.random.default_rng(1)
    e = rng.uniform(-1.2, 1.2, (50, 3))
    q = rotation.euler_to_quat(e, order)
    for row, qq in zip(e, q, strict=True):
        ref = np.array(Euler(row, order).to_quaternion()[:])
        assert np.allclose(qq, ref, atol=1e-6) or np.allclose(qq, -ref, atol=1e-6)  # mathutils is float32
    np.testing.assert_allclose(rotation.quat_to_euler(q, order), e, atol=1e-6)
    for row, aa in zip(q, rotation.quat_to_axis_angle(q), strict=True):
        axis, angle = Quaternion(row).to_axis_angle()
        np.testing.assert_allclose(aa, [angle, *axis], atol=1e-5)
    # a continuous turn past 180 degrees: the same continuous Euler curve as Blender's compatible Euler
    t = np.linspace(0.0, 4 * np.pi, 120)
    spin = rotation.euler_to_quat(np.stack([t, 0.3 * np.sin(t), 0.2 * t], axis=1), order)
    prev, ref = None, []
    for row in spin:
        eu = Quaternion(row).to_euler(order, prev) if prev is not None else Quaternion(row).to_euler(order)
        ref.append(eu[:])
        prev = eu
    np.testing.assert_allclose(rotation.quat_to_euler(spin, order), np.array(ref), atol=1e-4)


def test_multi_mesh_character_is_keyed_on_every_mesh(character):
    """Teeth/eyes/head meshes with their own copies of the keys, all skinned by the same rig."""
    head = character.meshes[0]
    teeth = head.copy()
    teeth.data = head.data.copy()
    teeth.name = "Teeth"
    bpy.context.scene.collection.objects.link(teeth)
    target = find_target(character.armature)
    assert sorted(o.name for o in target.meshes) == ["TalkRigHead", "Teeth"] and len(target.keys) == 2
    motion = smooth_motion(20)
    created = apply.apply_motion(motion, target)
    assert len(created) == 3 and len({a.name for a in created.values()}) == 1  # one clip, three slots
    bpy.context.scene.frame_set(6)
    for key in target.keys:
        assert key.key_blocks["jawOpen"].value == pytest.approx(float(motion.channel("jawOpen")[5]), abs=1e-5)


def test_saved_profile_reloads_and_maps_the_same(character, tmp_path):
    from blender_addon.core import mapping

    auto = mapping.auto_profile(character.shape_names, character.bone_names)
    path = mapping.save_profile(auto, tmp_path / "mine.toml")
    loaded = mapping.load_profile(path)
    motion = smooth_motion(15)
    a = mapping.evaluate(motion, auto, character.shape_names)
    b = mapping.evaluate(motion, mapping.fitted_profile(character.shape_names, character.bone_names, loaded),
                         character.shape_names)
    assert a.shapes.keys() == b.shapes.keys() and a.bones.keys() == b.bones.keys() == {"head", "neck"}
    for k in a.shapes:
        np.testing.assert_allclose(a.shapes[k], b.shapes[k])
    with pytest.raises(FileExistsError):
        mapping.save_profile(auto, path)


def test_existing_take_as_style_reference(character):
    from blender_addon import jobs

    first = smooth_motion(30, seed=5, name="first.wav")
    apply.apply_motion(first, character)
    apply.apply_motion(smooth_motion(30, seed=6, name="second.wav"), character)
    key = character.keys[0]
    assert key.animation_data.action.name == "second"
    ref = jobs.motion_from_action(bpy.data.actions["first"], character, bpy.context.scene)
    np.testing.assert_allclose(ref.weights, first.weights, atol=2e-5)
    np.testing.assert_allclose(ref.head[:, :3], first.head[:, :3], atol=2e-5)
    assert key.animation_data.action.name == "second", "reading a reference must not change the assignment"


def test_audio_from_a_sequencer_strip(character, tmp_path):
    from types import SimpleNamespace

    from blender_addon import jobs
    from blender_addon.core import scene_setup

    sf = pytest.importorskip("soundfile")
    wav = tmp_path / "vo.wav"
    sf.write(wav, np.zeros(8000, np.float32), 16000)
    scene = bpy.context.scene
    scene_setup.add_sound_strip(scene, wav, 33)
    settings = SimpleNamespace(audio_source="STRIP", strip_name="vo", offset_frames=2, audio_path="", start_frame=1)
    path, start = jobs.resolve_audio(settings, scene)
    assert path.resolve() == wav.resolve() and start == 35
    settings.strip_name = "missing"
    with pytest.raises(jobs.JobError, match="no sound strip named 'missing'"):
        jobs.resolve_audio(settings, scene)


def test_headless_places_several_takes_one_after_another(character_blend, tmp_path, capsys):
    from blender_addon import headless
    from rig_mapping.formats import save_motion

    a = save_motion(smooth_motion(30, seed=1), tmp_path / "a.npz")
    b = save_motion(smooth_motion(45, seed=2), tmp_path / "b.csv")  # Live Link CSV works as input too
    out = tmp_path / "out.blend"
    assert headless.main(["--character", character_blend, "--motion", str(a), "--motion", str(b), "--gap", "10",
                          "--out", str(out), "--out", str(tmp_path / "curves" / "{stem}.npz")]) == 0
    assert "a: frames 1-30" in capsys.readouterr().out
    bpy.ops.wm.open_mainfile(filepath=str(out))
    key = bpy.data.objects["TalkRigHead"].data.shape_keys
    strips = sorted((int(t.strips[0].frame_start), t.strips[0].action.name) for t in key.animation_data.nla_tracks
                    if anim.is_ours(t.strips[0].action))
    assert strips == [(1, "a"), (41, "b")]
    assert key.animation_data.action.name == "UserFace"  # several takes go to NLA; the user's Action stays
    assert (bpy.context.scene.frame_start, bpy.context.scene.frame_end) == (1, 85)
    # a motion --out pattern writes one file per take
    from rig_mapping.formats import load_motion

    assert [load_motion(tmp_path / "curves" / f"{n}.npz").n_frames for n in "ab"] == [30, 45]


def test_headless_never_writes_over_its_own_input(character_blend, tmp_path, capsys):
    from blender_addon import headless
    from rig_mapping.formats import save_motion

    a = save_motion(smooth_motion(30), tmp_path / "a.npz")
    before = a.read_bytes()
    assert headless.main(["--character", character_blend, "--motion", str(a), "--out", str(a), "--overwrite"]) == 1
    assert "is one of the input recordings" in capsys.readouterr().err and a.read_bytes() == before
