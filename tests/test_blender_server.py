"""Generate through a real local motion server (ZeroMQ on loopback, paced energy engine) from the add-on's
operators and from the headless runner, on the demo head."""

from __future__ import annotations

import json
import socket
import sys

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")
sf = pytest.importorskip("soundfile")

import addon_utils  # noqa: E402

from blender_addon.core import anim  # noqa: E402
from blender_addon.core.demo_head import build_demo_head  # noqa: E402

pytestmark = pytest.mark.blender

SR = 16000
FPS = 30


def _speechlike(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    """Voiced 'syllables' (harmonics of a gliding 110-160 Hz pitch) with pauses: loudness that rises and
    falls several times, like speech, so a correct pipeline must open and close the mouth."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 130 + 25 * np.sin(2 * np.pi * 0.8 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = np.zeros_like(t)
    pos = 0.2
    while pos < seconds - 0.3:
        dur = rng.uniform(0.15, 0.3)
        a, b = int(pos * SR), int((pos + dur) * SR)
        env[a:b] = np.sin(np.linspace(0, np.pi, b - a)) ** 0.5
        pos += dur + rng.uniform(0.1, 0.45)
    return (0.25 * env * voice / np.abs(voice).max() + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def _rms_per_frame(x: np.ndarray, n: int) -> np.ndarray:
    hop = SR // FPS
    return np.array([np.sqrt(np.mean(x[i * hop:(i + 1) * hop] ** 2)) if i * hop < len(x) else 0.0 for i in range(n)])


@pytest.fixture(scope="module")
def server_address():
    from motion_server.client_process import start_local_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    # The energy engine, paced over `steps` x 0.1 s: results are the energy engine's, and a job lasts long
    # enough that a non-blocking poll provably returns before it ends, even on a loaded machine.
    from motion_server_helpers import PACED, server_env

    proc = start_local_server(sys.executable, bind=address, engine=PACED, wait_s=180, env=server_env())
    yield address
    proc.terminate()
    proc.wait(30)


@pytest.fixture(scope="module")
def audio_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("audio") / "line_one.wav"
    sf.write(p, _speechlike(), SR)
    return p


@pytest.fixture
def addon(server_address):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.server_address = server_address
    prefs.timeout_s = 60
    yield prefs
    addon_utils.disable("blender_addon", default_set=True)


def test_generate_operator_animates_mouth_with_the_audio(addon, audio_file):
    head = build_demo_head()
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = FPS, 1.0
    key = head.mesh.data.shape_keys
    kb = key.key_blocks["mouthSmile_L"]
    kb.value = 0.7
    kb.keyframe_insert("value", frame=1)
    user_action = key.animation_data.action
    user_action.name = "UserSmile"
    bpy.context.view_layer.objects.active = head.mesh
    s = scene.talkrig
    s.audio_source, s.audio_path, s.start_frame = "FILE", str(audio_file), 1

    assert bpy.ops.talkrig.server_check() == {"FINISHED"} and s.server_ok
    assert bpy.ops.talkrig.generate(synchronous=True) == {"FINISHED"}

    take = key.animation_data.action
    assert take.name == "line_one" and anim.is_ours(take)
    fcs = {fc.data_path: fc for fc in anim.fcurves_of(key)}
    assert len(fcs) == 53
    bone_paths = {fc.data_path for fc in anim.fcurves_of(head.armature)}
    assert 'pose.bones["head"].rotation_quaternion' in bone_paths
    n = int(round(3.0 * FPS))
    frames = np.arange(1, n + 1)
    jaw = anim.sample(fcs['key_blocks["jawOpen"].value'], frames)
    # The mouth opens and closes: a wide range, and it follows the audio's loudness.
    assert jaw.max() > 0.3 and jaw.min() < 0.05, (jaw.min(), jaw.max())
    rms = _rms_per_frame(_speechlike(), n)
    corr = float(np.corrcoef(jaw, rms)[0, 1])
    assert corr > 0.6, corr
    # Playback is set up: range, sound strip at the take's start.
    assert (scene.frame_start, scene.frame_end) == (1, n)
    strips = [st for st in scene.sequence_editor.strips_all if st.type == "SOUND"]
    assert len(strips) == 1 and int(strips[0].frame_start) == 1
    # The user's Action is untouched and kept in an NLA track.
    assert user_action.name in bpy.data.actions
    ufc = [fc for layer in user_action.layers for st in layer.strips for bag in st.channelbags for fc in bag.fcurves]
    assert [tuple(k.co) for k in ufc[0].keyframe_points] == [(1.0, pytest.approx(0.7))]
    assert [t.strips[0].action.name for t in key.animation_data.nla_tracks] == ["UserSmile"]
    # The motion is kept on disk for re-applying without the server.
    assert s.last_motion.endswith(".npz")

    # Re-roll: next seed, a new take; the first one is kept.
    seed = s.seed
    assert bpy.ops.talkrig.reroll() == {"FINISHED"}
    assert s.seed == seed + 1
    assert key.animation_data.action.name == "line_one.001"
    assert "line_one" in bpy.data.actions


def test_headless_runner_generates_and_exports(server_address, audio_file, tmp_path, capsys):
    from blender_addon import headless

    bpy.ops.wm.read_factory_settings(use_empty=True)
    build_demo_head()
    blend = tmp_path / "char.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    fbx, out_blend = tmp_path / "take.fbx", tmp_path / "animated.blend"
    argv = [str(audio_file), "--character", str(blend), "--server", server_address, "--fps", "24",
            "--out", str(fbx), "--out", str(out_blend), "--json"]
    assert headless.main(argv) == 0
    out = capsys.readouterr().out  # Blender's own log lines come first; the JSON summary is printed last
    summary = json.loads(out[out.index("\n{\n") + 1 if not out.startswith("{") else 0:])
    (take,) = summary["takes"]
    assert take["name"] == ["line_one"] and (take["frame_start"], take["frame_end"]) == (1, 72)
    assert fbx.is_file() and out_blend.is_file()
    # Outputs are never replaced unless asked.
    assert headless.main(argv) == 1
    assert "already exists" in capsys.readouterr().err


def test_non_blocking_path_polls_to_completion(addon, audio_file):
    """The UI path: submit, then poll from a timer (driven here by a loop, since timers never fire in
    background mode) with progress mirrored into the panel, then apply."""
    from waiting import wait_until

    from blender_addon import server_link
    from blender_addon.ops_generate import PendingGenerate

    head = build_demo_head()
    bpy.context.scene.render.fps = FPS
    s = bpy.context.scene.talkrig
    client = server_link.client(addon.server_address, 60.0)
    job = client.submit(str(audio_file), {"fps": FPS, "seed": 4, "steps": 5})
    pending = PendingGenerate(job, head.mesh.name, audio_file, 5)
    seen = []

    def tick() -> bool:  # what the modal timer runs each time it fires
        if pending.tick(s):
            return True
        seen.append(s.status)
        return False

    wait_until(tick, 120, "the job to finish, polled at the timer's interval", interval=0.02)
    messages = []
    assert pending.finish(bpy.context, lambda level, msg: messages.append(msg)) == {"FINISHED"}
    assert s.progress == 1.0 and s.status == "done"
    assert seen, "the first poll must return before the job is done (non-blocking)"
    key = head.mesh.data.shape_keys
    assert key.animation_data.action.name == "line_one"
    fc = next(fc for fc in anim.fcurves_of(key) if fc.data_path == 'key_blocks["jawOpen"].value')
    assert fc.keyframe_points[0].co.x == 5.0
    assert "Keyed 90 frames" in messages[0]


def test_real_speech_opens_and_closes_the_mouth(addon):
    """A real recording (the shipped examples/jfk.flac, 11 s): the jaw follows the speech loudness on the
    character."""
    from pathlib import Path

    clip = Path(__file__).resolve().parents[1] / "examples" / "jfk.flac"
    x, sr = sf.read(clip, dtype="float32")
    x = x if x.ndim == 1 else x.mean(axis=1)
    head = build_demo_head()
    bpy.context.scene.render.fps = FPS
    bpy.context.view_layer.objects.active = head.mesh
    s = bpy.context.scene.talkrig
    s.audio_source, s.audio_path = "FILE", str(clip)
    assert bpy.ops.talkrig.server_check() == {"FINISHED"}  # Generate is greyed out until a server answered
    assert bpy.ops.talkrig.generate(synchronous=True) == {"FINISHED"}
    fc = next(fc for fc in anim.fcurves_of(head.mesh.data.shape_keys) if fc.data_path == 'key_blocks["jawOpen"].value')
    n = len(fc.keyframe_points)
    assert abs(n - len(x) / sr * FPS) <= 1
    jaw = anim.sample(fc, np.arange(1, n + 1))
    hop = sr / FPS
    rms = np.array([np.sqrt(np.mean(x[int(i * hop):int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n)])
    assert jaw.max() - jaw.min() > 0.3
    # many openings and closings, not one slow drift
    crossings = np.sum(np.diff((jaw > np.median(jaw)).astype(int)) != 0)
    assert crossings >= 6, crossings
    assert float(np.corrcoef(jaw, np.log(rms))[0, 1]) > 0.5


def test_registered_cli_command_runs_end_to_end(server_address, audio_file, tmp_path, capsys, monkeypatch):
    """`blender -b -c talkrig ...`: the function the extension registers as the `talkrig` CLI command,
    called with argv the way Blender calls it: demo head + a short clip through the server -> .glb."""
    from blender_helpers import glb_json

    registered: dict[str, object] = {}
    real_register = bpy.utils.register_cli_command

    def spy(name, fn):
        registered[name] = fn
        return real_register(name, fn)

    monkeypatch.setattr(bpy.utils, "register_cli_command", spy)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    try:
        command = registered["talkrig"]
        glb = tmp_path / "line.glb"
        rc = command([str(audio_file), "--character", "demo", "--server", server_address, "--out", str(glb),
                      "--json"])
        out = capsys.readouterr().out
        assert rc == 0, out
        summary = json.loads(out[out.index("\n{\n") + 1 if not out.startswith("{") else 0:])
        (take,) = summary["takes"]
        assert take["name"] == ["line_one"] and (take["frame_start"], take["frame_end"]) == (1, 90)
        # the clip in the .glb animates the morph targets, and the jaw really moves
        js = glb_json(glb)
        assert any(ch["target"]["path"] == "weights" for a in js["animations"] for ch in a["channels"])
        mesh = next(o for o in bpy.data.objects if o.type == "MESH" and o.data.shape_keys)
        fc = next(fc for fc in anim.fcurves_of(mesh.data.shape_keys) if fc.data_path == 'key_blocks["jawOpen"].value')
        jaw = anim.sample(fc, np.arange(1, 91))
        assert jaw.max() - jaw.min() > 0.3
        # argparse's exits come back as exit codes (Blender expects a return value, not SystemExit)
        assert command(["--help"]) == 0
        assert command(["--no-such-option"]) == 2
        assert "unrecognized arguments" in capsys.readouterr().err
    finally:
        addon_utils.disable("blender_addon", default_set=True)


def test_headless_stops_the_server_it_started(audio_file, tmp_path, capsys):
    """--start-server launches a detached local server; it must not outlive the batch job."""
    from motion_server_helpers import free_port

    from blender_addon import headless, server_link

    address = f"tcp://127.0.0.1:{free_port()}"
    argv = [str(audio_file), "--character", "demo", "--server", address, "--start-server",
            "--python", sys.executable, "--engine", "energy", "--out", str(tmp_path / "a.blend")]
    try:
        assert headless.main(argv) == 0, capsys.readouterr().err
        assert (tmp_path / "a.blend").is_file()
        assert not server_link.local_server_running()
        with pytest.raises(server_link.ServerLinkError):
            server_link.check(address, timeout_s=0.5)
    finally:
        server_link.stop_local()
