"""Every file TalkRig writes is atomic (temp in the same folder + rename), a kill never destroys the
previous file, a later run sweeps what a killed one left, and file problems are one-line errors.

Findings 5 (atomic exports/renders), 8 (CLI file errors, Ctrl-C summary) and 9 (temp files left by
kill -9) of the hardening issue."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from waiting import wait_until

from rig_mapping import FaceMotion
from rig_mapping.atomic import (
    OutputError,
    atomic_output,
    atomic_output_group,
    check_folder_writable,
    is_temp_name,
    pid_alive,
    scratch_dir,
    sweep_scratch,
    sweep_stale,
    temp_name,
)
from rig_mapping.formats import save_motion

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "examples" / "hello_flite.flac"  # 1.4 s


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if is_temp_name(p.name))


def _writer_temp(p: Path) -> bool:
    """A writer's temporary file (not the short-lived probe with which a run checks the folder first)."""
    return is_temp_name(p.name) and not p.name.startswith(".write-probe")


def dead_pid() -> int:
    """The pid of a process that has exited (and was reaped)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait(timeout=60)
    return p.pid


@pytest.fixture
def unwritable_dir(tmp_path: Path):
    """A folder nobody may create files in, root included (chattr +i as root, chmod otherwise)."""
    d = tmp_path / "locked"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
        pytest.skip("running as root and chattr +i is not available here: no way to make a folder unwritable")
    try:
        yield d
    finally:
        subprocess.run(["chattr", "-i", str(d)], check=False)


def small_motion(n: int = 30) -> FaceMotion:
    w = np.full((n, 52), 0.25, np.float32)
    return FaceMotion.from_arrays(w, fps=30.0)


# -- the helper --------------------------------------------------------------------------------------

def test_temp_names_keep_the_suffix_and_are_recognised_only_for_ours(tmp_path: Path):
    t = temp_name(tmp_path / "take.glb")
    assert t.parent == tmp_path and t.suffix == ".glb" and t.name.startswith(".take.glb.talkrig-tmp-")
    assert is_temp_name(t.name) and f"-{os.getpid()}-" in t.name
    for user_file in ("take.glb", ".take.glb", ".take.glb.tmp", "take.talkrig-tmp-1-abcdef-0123abcd.glb",
                      ".take.glb.talkrig-tmp-x-abcdef-0123abcd.glb"):
        assert not is_temp_name(user_file), user_file


def test_a_failing_writer_leaves_the_old_file_and_no_temp(tmp_path: Path):
    dest = tmp_path / "take.npz"
    dest.write_bytes(b"the user's good file")
    with pytest.raises(RuntimeError, match="exporter crashed"):
        with atomic_output(dest) as tmp:
            tmp.write_bytes(b"half a fi")
            raise RuntimeError("exporter crashed")
    assert dest.read_bytes() == b"the user's good file" and temps(tmp_path) == []
    with pytest.raises(OutputError, match="was not written"):
        with atomic_output(dest):
            pass  # a writer that reports success but writes nothing
    assert dest.read_bytes() == b"the user's good file"
    with atomic_output(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and temps(tmp_path) == []


def test_a_gltf_and_its_buffer_move_into_place_together(tmp_path: Path):
    dest = tmp_path / "take.gltf"
    with atomic_output_group(dest) as main:
        assert main.name == "take.gltf" and main.parent.parent == tmp_path and is_temp_name(main.parent.name)
        main.with_suffix(".bin").write_bytes(b"buffer")
        main.write_text('{"buffers": [{"uri": "take.bin"}]}')
    assert (tmp_path / "take.bin").read_bytes() == b"buffer" and json.loads(dest.read_text())
    assert temps(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic_output_group(dest) as main:
            main.with_suffix(".bin").write_bytes(b"other")
            raise RuntimeError("killed")
    assert (tmp_path / "take.bin").read_bytes() == b"buffer" and temps(tmp_path) == []


def test_sweep_removes_only_temps_of_dead_writers(tmp_path: Path):
    gone = dead_pid()
    assert not pid_alive(gone) and pid_alive(os.getpid())
    mine = temp_name(tmp_path / "a.glb")
    stale = mine.with_name(mine.name.replace(f"-{os.getpid()}-", f"-{gone}-"))
    stale_dir = tmp_path / f".b.gltf.talkrig-tmp-{gone}-{stale.name.split('-')[-2]}-0123abcd"
    foreign = tmp_path / f".c.fbx.talkrig-tmp-{gone}-ffffff-0123abcd.fbx"  # another host: kept a day
    old_foreign = tmp_path / f".d.fbx.talkrig-tmp-{gone}-ffffff-89abcdef.fbx"
    users = [tmp_path / n for n in ("a.glb", ".a.glb.tmp", "notes.talkrig-tmp-1-abcdef-0123abcd.txt")]
    for p in (mine, stale, foreign, old_foreign, *users):
        p.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "b.bin").write_bytes(b"x")
    os.utime(old_foreign, (time.time() - 2 * 86400,) * 2)
    removed = sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale.name, stale_dir.name, old_foreign.name])
    assert mine.exists() and foreign.exists() and all(p.exists() for p in users)
    assert sweep_stale(tmp_path / "missing") == []


def test_scratch_folders_of_dead_processes_are_swept():
    with scratch_dir("unit") as d:
        assert d.is_dir() and str(os.getpid()) in d.name
        fake = d.with_name(d.name.replace(f"-{os.getpid()}-", f"-{dead_pid()}-"))
        fake.mkdir()
        (fake / "frame_000001.png").write_bytes(b"x")
        assert fake in sweep_scratch() and d.is_dir()
    assert not d.exists() and not fake.exists()


def test_an_unwritable_folder_is_named_not_a_temp_file(unwritable_dir: Path):
    with pytest.raises(OutputError, match="permission denied|read-only|not permitted") as e:
        check_folder_writable(unwritable_dir / "a.npz")
    assert str(unwritable_dir) in str(e.value) and ".talkrig-tmp-" not in str(e.value)
    with pytest.raises(OSError) as e:
        save_motion(small_motion(), unwritable_dir / "a.npz")
    assert str(unwritable_dir / "a.npz") in str(e.value) and ".talkrig-tmp-" not in str(e.value)


# -- kill -9 mid-write -------------------------------------------------------------------------------

SLOW_WRITER = """
import sys, time
from rig_mapping.atomic import atomic_output
with atomic_output(sys.argv[1]) as tmp:
    with open(tmp, "wb") as f:
        while True:  # a long export: killed before it ends
            f.write(b"n" * 65536)
            f.flush()
            time.sleep(0.01)  # pacing the endless export the test kills, not synchronisation
"""


def test_sigkill_mid_write_keeps_the_old_file_and_the_next_run_sweeps_the_temp(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    dest = out / "take.npz"
    save_motion(small_motion(), dest)
    good = dest.read_bytes()
    child = subprocess.Popen([sys.executable, "-c", SLOW_WRITER, str(dest)], cwd=REPO,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        tmp = wait_until(lambda: [p for p in out.iterdir() if is_temp_name(p.name) and p.stat().st_size > 300_000],
                       60, "the writer's temporary file")[0]
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert dest.read_bytes() == good and tmp.exists()  # the kill cost nothing the user had
    # the next run (a real CLI run writing into the same folder) sweeps the dead writer's temp first
    r = subprocess.run([sys.executable, "-m", "motion_server", "generate", str(CLIP), "--engine", "energy",
                        "--out", str(out / "other.npz"), "-q"], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert temps(out) == [] and dest.read_bytes() == good


@pytest.mark.blender
def test_sigkill_mid_blender_export_keeps_the_old_glb_byte_identical(tmp_path: Path):
    """Finding 5: a kill mid-export used to replace a good .glb with a truncated one. A real Blender
    child (the batch runner, run by its flags) exports a 60 s take on the demo head over an existing
    .glb and is SIGKILLed the moment its temporary file appears."""
    pytest.importorskip("bpy", reason="the Blender job needs the bpy wheel")
    from blender_helpers import smooth_motion

    out = tmp_path / "out"
    out.mkdir()
    dest = out / "take.glb"
    good = b"glTF" + os.urandom(1 << 20)  # stands for the user's earlier export; any bytes will do
    dest.write_bytes(good)
    motion_file = save_motion(smooth_motion(1800), tmp_path / "take.npz")  # 60 s at 30 fps
    child = subprocess.Popen([sys.executable, "-m", "blender_addon.headless", "--motion", str(motion_file),
                              "--character", "demo", "--out", str(dest), "--overwrite"], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        tmp = wait_until(lambda: [p for p in out.iterdir() if _writer_temp(p)], 500,
                       "the exporter's temporary file", interval=0.001)[0]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert child.returncode == -signal.SIGKILL, "the export finished before the kill landed"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
    assert dest.read_bytes() == good, "the kill changed the user's file"
    assert tmp.exists() and temps(out) == [tmp.name]
    # the next run sweeps it (and leaves the user's file alone)
    r = subprocess.run([sys.executable, "-m", "motion_server", "animate", str(CLIP), "--engine", "energy",
                        "--out", str(out / "next.npz")], cwd=tmp_path, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert temps(out) == [] and dest.read_bytes() == good


# -- the command line: file problems are one-line errors, found before any work -----------------------

def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", *args], cwd=cwd, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_generate_never_writes_over_its_own_input_even_with_overwrite(tmp_path: Path):
    ref = save_motion(small_motion(60), tmp_path / "ref.csv")
    before = ref.read_bytes()
    r = run_cli("generate", str(CLIP), "--engine", "energy", "--style", "ref.csv", "--out", "ref.csv",
                "--overwrite", "-q", cwd=tmp_path)
    assert r.returncode == 2 and "--style input" in one_line_error(r)
    assert ref.read_bytes() == before
    (tmp_path / "words.json").write_text("ask not")
    r = run_cli("generate", str(CLIP), "--engine", "energy", "--transcript-file", "words.json", "--out",
                "./words.json", "--overwrite", "-q", cwd=tmp_path)
    assert r.returncode == 2 and "--transcript-file input" in one_line_error(r)
    assert (tmp_path / "words.json").read_text() == "ask not"


@pytest.mark.parametrize("damage", ["empty", "truncated", "config_list", "config_not_json", "config_no_keys"])
def test_a_damaged_checkpoint_is_one_clear_line_naming_the_file(tmp_path: Path, damage: str):
    src = REPO / "motion_server" / "model" / "default"
    ck = tmp_path / "ck"
    shutil.copytree(src, ck)
    weights, config = ck / "model.safetensors", ck / "config.json"
    if damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncated":  # a copy cut short
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size - 5000])
    elif damage == "config_list":
        config.write_text("[1, 2]")
    elif damage == "config_not_json":
        config.write_text('{"format": ')
    else:
        config.write_text('{"format": "talkrig-diffusion-1"}')
    named = {"empty": weights, "truncated": weights}.get(damage, config if damage != "config_no_keys" else ck)
    for cmd in (["generate", str(CLIP), "--model", str(ck), "--out", "a.npz", "-q"],
                ["animate", str(CLIP), "--model", str(ck), "--out", "b.npz"]):
        r = run_cli(*cmd, cwd=tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        line = one_line_error(r)
        assert str(named) in line, line
    assert not (tmp_path / "a.npz").exists() and not (tmp_path / "b.npz").exists()


@pytest.mark.parametrize("style", ["missing.csv", "a_folder/", "sub/missing.npz"])
def test_a_style_naming_a_missing_file_or_a_folder_is_one_line(tmp_path: Path, style: str):
    (tmp_path / "a_folder").mkdir()
    for cmd in (["generate", str(CLIP), "--out", "a.npz", "-q"], ["animate", str(CLIP), "--out", "b.npz"]):
        r = run_cli(*cmd, "--style", style, cwd=tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        line = one_line_error(r)
        assert style.rstrip("/") in line and ("is a folder" if style.endswith("/") else "not found") in line, line


def test_a_read_only_output_folder_is_named_before_any_generation(tmp_path: Path, unwritable_dir: Path):
    # a broken checkpoint proves the order: the folder is checked before the engine is even loaded
    ck = tmp_path / "ck"
    ck.mkdir()
    (ck / "config.json").write_text("[]")
    (ck / "model.safetensors").write_bytes(b"")
    for cmd in (["generate", str(CLIP), "--model", str(ck), "-q"], ["animate", str(CLIP), "--model", str(ck)]):
        r = run_cli(*cmd, "--out", str(unwritable_dir / "take.npz"), cwd=tmp_path)
        assert r.returncode == 2, r.stdout + r.stderr
        line = one_line_error(r)
        assert f"output folder {unwritable_dir}" in line and ".talkrig-tmp-" not in line, line


def test_ctrl_c_in_a_batch_prints_the_summary_and_keeps_finished_files(tmp_path: Path):
    clips = tmp_path / "clips"
    clips.mkdir()
    n = 8
    for i in range(n):
        shutil.copy(CLIP, clips / f"take{i:02d}.flac")
    out = tmp_path / "out"
    # as started from a terminal: a test runner's worker may ignore SIGINT, and a child inherits that (it
    # then ignores Ctrl-C everywhere except where talkrig holds it around a rename, which made this flaky)
    proc = subprocess.Popen([sys.executable, "-m", "motion_server", "animate", str(clips), "--engine", "procedural",
                             "--out", "out/{stem}.npz"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_until(lambda: (out / "take00.npz").exists(), 300, "the first finished file", interval=0.01)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == 130, stdout + stderr[-2000:]
    assert "Traceback" not in stderr
    rows = {ln.split()[0]: ln for ln in stdout.splitlines() if ln.split() and ln.split()[0].endswith(".flac")}
    assert len(rows) == n, stdout
    done = [n for n, ln in rows.items() if " ok " in ln]
    stopped = [n for n, ln in rows.items() if "interrupted" in ln]
    assert done and stopped and len(done) + len(stopped) == n, stdout
    assert f"{len(done)} of {n} input(s) done" in stdout
    from rig_mapping.formats import load_motion

    for name in done:  # every file reported as finished is complete
        assert load_motion(out / f"{Path(name).stem}.npz").n_frames > 0
    assert temps(out) == []


@pytest.mark.blender
def test_sigkill_mid_preview_mux_keeps_the_old_mp4_and_the_next_run_sweeps_everything(tmp_path: Path):
    """Finding 5: a kill while the preview was written left a 0-byte .mp4 in place of the old one. The
    Blender job renders, then ffmpeg writes the temporary .mp4; the job is SIGKILLed the moment it
    appears (the rename can only follow ffmpeg's exit). The next run sweeps the temp and the frames."""
    pytest.importorskip("bpy", reason="the Blender job needs the bpy wheel")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed: the preview render needs it")
    from blender_helpers import smooth_motion

    out = tmp_path / "out"
    out.mkdir()
    dest = out / "take.mp4"
    good = os.urandom(200_000)  # stands for the user's earlier preview
    dest.write_bytes(good)
    motion_file = save_motion(smooth_motion(45), tmp_path / "take.npz")
    spec = tmp_path / "jobs.json"  # the job file `talkrig animate` hands the runner: a motion and its audio
    spec.write_text(json.dumps({"version": 2, "jobs": [{
        "argv": ["--character", "demo", "--render", str(dest), "--resolution", "64x64", "--overwrite"],
        "takes": [{"name": "take", "motion": str(motion_file), "audio": str(CLIP)}]}]}))
    # a temp folder of its own: any talkrig run sweeps dead jobs' scratch, and tests running beside this
    # one would otherwise sweep the killed job's frames before this test looks for them
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(scratch))
    child = subprocess.Popen([sys.executable, "-m", "blender_addon.headless", "--job-file", str(spec)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        tmp = wait_until(lambda: [p for p in out.iterdir() if _writer_temp(p)], 500,
                       "ffmpeg's temporary .mp4", interval=0.001)[0]
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert dest.read_bytes() == good, "the kill changed the user's preview"
    frames = list(scratch.glob(f"talkrig-scratch-{child.pid}-*"))
    assert frames, "the killed job's rendered frames should still be there before the next run"
    r = subprocess.run([sys.executable, "-m", "motion_server", "animate", str(CLIP), "--engine", "energy",
                        "--out", str(out / "next.npz")], cwd=tmp_path, capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert temps(out) == [] and dest.read_bytes() == good and not tmp.exists()
    assert not any(p.exists() for p in frames)


def test_a_symlinked_destination_is_written_through(tmp_path: Path):
    real = tmp_path / "store" / "take.csv"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "take.csv"
    link.symlink_to(real)
    save_motion(small_motion(), link, overwrite=True)
    assert link.is_symlink() and real.read_text().startswith("Timecode,") and temps(tmp_path) == []
