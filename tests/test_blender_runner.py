"""The one Blender batch runner (blender_addon.headless): its flags are `talkrig animate`'s, old names still
work with a note, a run by flags writes a .glb that re-imports, and a job file goes through the same steps."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

bpy = pytest.importorskip("bpy")

from blender_helpers import smooth_motion  # noqa: E402

from blender_addon import headless  # noqa: E402
from blender_addon.core import anim  # noqa: E402
from motion_server import options  # noqa: E402

pytestmark = pytest.mark.blender

# Flags only the runner has, and why: it keys takes into one scene and talks to a motion server.
RUNNER_ONLY = {
    "--motion",  # a motion file as a take (animate always generates)
    "--job-file",  # the job file animate itself hands over
    "--start-frame", "--gap", "--nla",  # where takes go in a user's scene
    "--server-key", "--start-server", "--python", "--keep-server", "--timeout",  # its server connection
    "--json",
}
# Flags only `talkrig animate` has: it runs the engine and the recogniser in its own processes, on its
# own workers, and keeps the batch's ledger and report (the runner is one Blender process).
ANIMATE_ONLY = {"--model", "--asr-model", "--jobs", "-j", "--ray", "--retries", "--force", "--report"}
# The shared concepts: same name in both, whatever else is added later.
SHARED = {
    "--character", "--out", "-o", "--render", "--overwrite", "--fps", "--target", "--profile", "--resolution",
    "--samples", "--render-engine", "--server", "--engine", "--transcript", "--no-transcript-files",
    "--style", "--guidance", "--intensity", "--head-motion", "--blink-rate", "--seed", "--steps", "--sampler",
    "--no-transcribe",
}


def _animate_parser() -> argparse.ArgumentParser:
    from motion_server.cli import cmd_animate

    sub = argparse.ArgumentParser().add_subparsers()
    cmd_animate.register(sub)
    return sub.choices["animate"]


def _flags(ap: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in ap._actions for s in a.option_strings
            if a.help != argparse.SUPPRESS and s not in ("-h", "--help")}


def test_runner_and_talkrig_animate_name_the_same_things_the_same_way():
    runner, animate = _flags(headless.build_parser()), _flags(_animate_parser())
    assert SHARED <= runner.keys() & animate.keys()
    # every flag is either shared or one side's own, on purpose (a new flag must be decided on here)
    assert runner.keys() - animate.keys() == RUNNER_ONLY
    assert animate.keys() - runner.keys() == ANIMATE_ONLY
    # where they differ, and why: --fps is the scene's rate here (default: the scene's own), the runner
    # always talks to a server (default address) whose engine name Blender cannot check (no registry)
    differs = {"--fps": {"default", "help"}, "--server": {"default", "help"}, "--engine": {"default", "choices", "help"}}
    table = {o.flag for o in options.OPTIONS if o.flag}
    for flag in SHARED:
        r, a = runner[flag], animate[flag]
        assert r.dest == a.dest and r.nargs == a.nargs and r.const == a.const, flag
        for attr in ("default", "choices") + (("help",) if flag in table else ()):
            if attr not in differs.get(flag, ()):
                assert getattr(r, attr) == getattr(a, attr), (flag, attr)
    # the audio arguments too
    pos = [a for a in headless.build_parser()._actions if not a.option_strings]
    assert [(a.dest, a.metavar) for a in pos] == [(a.dest, a.metavar) for a in _animate_parser()._actions
                                                   if not a.option_strings]


def test_old_flag_names_still_work_and_say_the_new_one(capsys):
    args = headless.parse_args(["--scene", "hero.blend", "--audio", "a.wav", "--fbx", "a.fbx", "--gltf", "a.glb",
                                "--save", "a.blend", "--preview", "a.mp4", "b.wav", "--out", "a.csv"])
    assert args.character == "hero.blend" and args.render == "a.mp4"
    assert [str(p) for p in args.inputs] == ["b.wav", "a.wav"]
    assert args.out == ["a.csv", "a.fbx", "a.glb", "a.blend"]
    err = capsys.readouterr().err
    for line in ("--scene is an old name; use --character hero.blend instead",
                 "--audio is an old name; give audio files as arguments (a.wav) instead",
                 "--fbx is an old name; use --out a.fbx instead", "--save is an old name; use --out a.blend",
                 "--preview is an old name; use --render a.mp4 instead"):
        assert line in err
    assert headless.parse_args(["--demo-head"]).character == "demo"
    # two characters: refused, naming the one flag to use
    with pytest.raises(SystemExit) as exc:
        headless.parse_args(["--scene", "hero.blend", "--demo-head"])
    assert exc.value.code == 2 and "give one --character" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        headless.parse_args(["--character", "demo", "--scene", "hero.blend"])
    assert "--character demo and --scene hero.blend: give one --character" in capsys.readouterr().err


def test_flags_on_the_demo_head_with_a_motion_file_write_a_glb_that_reimports(tmp_path, capsys):
    from rig_mapping.arkit import ARKIT_INDEX
    from rig_mapping.formats import save_motion

    motion = smooth_motion(30, fps=30)
    m = save_motion(motion, tmp_path / "take.npz")
    out = tmp_path / "out" / "{stem}.glb"  # the folder is made; {stem} is the take's name
    assert headless.main(["--motion", str(m), "--character", "demo", "--out", str(out), "--json"]) == 0
    text = capsys.readouterr().out
    summary = json.loads(text[text.index("\n{\n") + 1 if not text.startswith("{") else 0:])
    glb = tmp_path / "out" / "take.glb"
    assert summary["outputs"] == [str(glb)] and summary["fps"] == 30.0  # a new scene plays at the motion's rate
    assert (summary["takes"][0]["frame_start"], summary["takes"][0]["frame_end"]) == (1, 30)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(glb))
    mesh = next(o for o in bpy.data.objects if o.type == "MESH" and o.data.shape_keys is not None)
    fc = next(fc for fc in anim.fcurves_of(mesh.data.shape_keys) if fc.data_path == 'key_blocks["jawOpen"].value')
    keys = np.array([kp.co for kp in fc.keyframe_points])
    assert len(keys) == 30
    jaw = motion.weights[:, ARKIT_INDEX["jawOpen"]]
    assert np.corrcoef(keys[:, 1], jaw)[0, 1] > 0.99 and np.ptp(keys[:, 1]) > 0.3

    # the same command again: the .glb is never replaced without --overwrite
    assert headless.main(["--motion", str(m), "--character", "demo", "--out", str(out)]) == 1
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    # nothing to animate: a usage error
    assert headless.main(["--character", "demo"]) == 2
    assert "nothing to animate" in capsys.readouterr().err
    # --target names the object; a wrong name lists the ones there are
    assert headless.main(["--motion", str(m), "--character", "demo", "--target", "Nope",
                          "--out", str(tmp_path / "t.blend")]) == 1
    assert "no object named 'Nope'; objects: TalkRigHead" in capsys.readouterr().err


def test_a_job_file_runs_every_job_and_one_failure_does_not_stop_the_next(tmp_path, capsys):
    """What `talkrig animate` hands over: the runner's own flags per job plus its take (a motion and
    the audio it came from), through the same steps as the flags."""
    from rig_mapping.formats import save_motion

    m = save_motion(smooth_motion(20), tmp_path / "a.npz")
    spec = tmp_path / "jobs.json"
    spec.write_text(json.dumps({"version": headless.JOBS_VERSION, "jobs": [
        {"argv": ["--character", "demo", "--out", str(tmp_path / "x.blend")],
         "takes": [{"name": "gone", "motion": str(tmp_path / "missing.npz"), "audio": None}]},
        {"argv": ["--character", "demo", "--out", str(tmp_path / "b.blend"), "--no-such-flag"],
         "takes": [{"name": "bad", "motion": str(m), "audio": None}]},
        {"argv": ["--character", "demo", "--out", str(tmp_path / "line.blend")],
         "takes": [{"name": "line", "motion": str(m), "audio": None}]},
    ]}))
    assert headless.main(["--job-file", str(spec)]) == 1
    events = [json.loads(ln[len(headless.PROGRESS_PREFIX):]) for ln in capsys.readouterr().out.splitlines()
              if ln.startswith(headless.PROGRESS_PREFIX)]
    ends = {e["job"]: e for e in events if e["type"] in ("done", "error")}
    assert "motion file not found" in ends[0]["error"] and "missing.npz" in ends[0]["error"]
    assert "--no-such-flag" in ends[1]["error"]
    assert ends[2]["type"] == "done" and ends[2]["outputs"] == [str(tmp_path / "line.blend")]
    assert [e["stage"] for e in events if e["type"] == "stage" and e["job"] == 2] == ["character", "keys", "export"]
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "line.blend"))
    assert "line" in bpy.data.actions and not (tmp_path / "x.blend").exists()
    # a job file with other flags beside it: refused, the flags belong inside the jobs
    with pytest.raises(SystemExit):
        headless.main(["--job-file", str(spec), "--overwrite"])
    assert "give the other flags inside it" in capsys.readouterr().err


def test_the_jobs_talkrig_animate_writes_are_the_runners_own_flags():
    from motion_server.animate.blender_bridge import BlenderJob

    job = BlenderJob(motion="/t/a.npz", audio="/in/a.wav", name="a", out="/o/a.fbx", render="/o/a.mp4",
                     character="/c/hero.blend", target="Face", profile="rocketbox", resolution=(96, 64), samples=4,
                     render_engine="cycles", overwrite=True)
    spec = job.spec()
    args = headless.parse_args(spec["argv"], raise_errors=True)
    assert (args.character, args.target, args.profile, args.out, args.render) == (
        "/c/hero.blend", "Face", "rocketbox", ["/o/a.fbx"], "/o/a.mp4")
    assert (args.resolution, args.samples, args.render_engine, args.overwrite) == ("96x64", 4, "cycles", True)
    assert spec["takes"] == [{"name": "a", "motion": "/t/a.npz", "audio": "/in/a.wav"}]
    # the defaults: the demo head, nothing but the take
    args = headless.parse_args(BlenderJob(motion="m.npz", audio="a.wav", name="a", out="a.glb").spec()["argv"])
    assert args.character == "demo" and args.target is None and args.render is None and not args.overwrite
