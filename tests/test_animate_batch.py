"""`talkrig animate` at scale: manifests, local worker pools (--jobs), Ray (--ray), the ledger that skips
unchanged inputs on a re-run, retries after a killed worker, and the JSON report. Real processes, a real
local Ray cluster, real audio (the shipped example clip)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from waiting import RAY_LOCK_S, machine_lock

from motion_server.animate.manifest import Line, read_manifest
from motion_server.animate.plan import PlanError, expand_lines, plan

REPO = Path(__file__).resolve().parents[1]
CLIP = REPO / "examples" / "hello_flite.flac"  # 1.4 s, our own flite synthesis
# no recognition in these tests: they are about where work runs, not what is heard
FAST = ("--engine", "procedural", "--no-transcribe")


def talkrig(*args: str, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", "animate", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def clips(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"line{i:02d}.flac"
        shutil.copy(CLIP, p)
        out.append(p)
    return out


def curves(path: Path) -> np.ndarray:
    from rig_mapping.formats import load_motion

    return load_motion(path).weights


# -- manifests ----------------------------------------------------------------------------------------
def test_a_csv_manifest_gives_each_line_its_own_settings(tmp_path):
    a, b = clips(tmp_path / "audio", 2)
    (tmp_path / "lines.csv").write_text(
        "audio,transcript,style,out\n"
        "audio/line00.flac,hello there,happy:2,\n"
        "audio/line01.flac,,,special/b.csv\n"
        ",,,\n"  # an empty row is ignored, not an error
    )
    lines, notes = expand_lines([str(tmp_path / "lines.csv")])
    assert lines == [Line(audio=a, transcript="hello there", style="happy:2"),
                     Line(audio=b, out=tmp_path / "special" / "b.csv")]
    assert "2 line(s)" in notes[0]
    items = plan(lines, str(tmp_path / "out" / "{stem}.npz"), None, overwrite=False)
    assert [i.out for i in items] == [tmp_path / "out" / "line00.npz", tmp_path / "special" / "b.csv"]
    assert items[0].transcript == "hello there" and items[0].style == "happy:2" and items[1].style is None


def test_a_json_manifest_reads_like_the_csv(tmp_path):
    a, = clips(tmp_path, 1)
    (tmp_path / "m.json").write_text(json.dumps({"lines": [{"audio": a.name, "style": "sad"}]}))
    assert read_manifest(tmp_path / "m.json") == [Line(audio=a, style="sad")]


def test_a_manifest_names_each_lines_language_and_a_wrong_code_is_refused_with_its_line(tmp_path):
    a, b = clips(tmp_path, 2)
    (tmp_path / "m.csv").write_text(f"audio,language\n{a.name},de\n{b.name},\n")
    lines = read_manifest(tmp_path / "m.csv")
    assert [ln.language for ln in lines] == ["de", None]  # None: --language, else checked per line
    items = plan(lines, str(tmp_path / "out" / "{stem}.csv"), None, overwrite=False)
    assert [it.language for it in items] == ["de", None]
    (tmp_path / "bad.csv").write_text(f"audio,language\n{a.name},eng\n")
    with pytest.raises(PlanError, match=r"line 2: unknown language 'eng'; choose a language code Whisper knows"):
        expand_lines([str(tmp_path / "bad.csv")])


@pytest.mark.parametrize("text, expect", [
    ("audio,mood\nx.flac,happy\n", "unknown column(s) 'mood'"),
    ("file,style\nx.flac,happy\n", "no 'audio' column"),
    ("audio,style\n,happy\n", "line 2: the audio cell is empty"),
])
def test_a_broken_manifest_is_refused_naming_the_line_and_the_fix(tmp_path, text, expect):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(PlanError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        expand_lines([str(tmp_path / "m.csv")])


def test_manifest_lines_animate_with_their_own_style(tmp_path):
    clips(tmp_path / "audio", 2)
    (tmp_path / "m.csv").write_text("audio,style\naudio/line00.flac,happy:3\naudio/line01.flac,sad:3\n")
    r = talkrig("m.csv", *FAST, "--out", "out/{stem}.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    from rig_mapping.formats import load_motion

    happy, sad = (load_motion(tmp_path / "out" / f"line0{i}.npz") for i in (0, 1))
    # same audio, different style per line: the happy line smiles more
    assert happy.channel("mouthSmileLeft").mean() > sad.channel("mouthSmileLeft").mean() + 0.02


# -- local workers -----------------------------------------------------------------------------------
def test_two_local_workers_give_the_same_curves_as_one(tmp_path):
    clips(tmp_path / "audio", 4)
    one = talkrig("audio", *FAST, "--out", "one/{stem}.csv", "--jobs", "1", cwd=tmp_path)
    two = talkrig("audio", *FAST, "--out", "two/{stem}.csv", "--jobs", "2", "--report", "two/report.json",
                  cwd=tmp_path)
    assert one.returncode == 0 and two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    for i in range(4):
        np.testing.assert_array_equal(curves(tmp_path / "one" / f"line{i:02d}.csv"),
                                      curves(tmp_path / "two" / f"line{i:02d}.csv"))
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert report["counts"] == {"ok": 4, "skipped": 0, "failed": 0}
    assert report["backend"] == "2 local worker processes"
    workers = {r["worker"] for r in report["inputs"]}
    assert len(workers) == 2 and all(":" in w for w in workers)  # host:pid of each worker process


def test_a_rerun_skips_unchanged_inputs_and_redoes_changed_ones(tmp_path):
    clips(tmp_path / "audio", 2)
    first = talkrig("audio", *FAST, "--out", "out/{stem}.csv", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.csv")}

    again = talkrig("audio", *FAST, "--out", "out/{stem}.csv", "--report", "r.json", cwd=tmp_path)
    assert again.returncode == 0 and "already up to date" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.csv")} == before
    assert json.loads((tmp_path / "r.json").read_text())["counts"]["skipped"] == 2

    # another seed is another take: without --overwrite the file is kept and the input fails, naming it
    changed = talkrig("audio", *FAST, "--seed", "7", "--out", "out/{stem}.csv", cwd=tmp_path)
    assert changed.returncode == 1 and "--overwrite" in changed.stdout
    redone = talkrig("audio", *FAST, "--seed", "7", "--out", "out/{stem}.csv", "--overwrite", cwd=tmp_path)
    assert redone.returncode == 0 and "up to date" not in redone.stdout
    assert all(p.stat().st_mtime_ns != before[p.name] for p in (tmp_path / "out").glob("*.csv"))

    # a file changed by hand is no longer "up to date": it is the user's, kept unless --overwrite
    (tmp_path / "out" / "line00.csv").write_text("edited by hand\n")
    kept = talkrig("audio", *FAST, "--seed", "7", "--out", "out/{stem}.csv", cwd=tmp_path)
    assert kept.returncode == 1 and (tmp_path / "out" / "line00.csv").read_text() == "edited by hand\n"


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _pool_workers(pid: int) -> list[int]:
    """The ``--jobs N`` worker processes under ``pid``: forked by the fork server (children of the
    process whose command line runs multiprocessing.forkserver), or spawned where there is none."""
    out = []
    for server in [pid, *_descendants(pid)]:
        cmd = _cmdline(server)
        if "multiprocessing.forkserver" in cmd:
            out += _children(server)
        elif "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(server)
    return out


class KillOneWorker(threading.Thread):
    """Once the batch's first output exists (workers busy, work left), SIGKILL one worker process."""

    def __init__(self, outputs: Path, proc: subprocess.Popen, candidates, deadline_s: float = 300) -> None:
        super().__init__(daemon=True)
        self.outputs, self.proc, self.candidates, self.deadline_s = outputs, proc, candidates, deadline_s
        self.stop = threading.Event()
        self.killed: list[int] = []
        self.start()

    def run(self) -> None:
        import time

        end = time.monotonic() + self.deadline_s
        while not self.stop.is_set() and time.monotonic() < end and self.proc.poll() is None:
            if any(self.outputs.glob("*.csv")):
                for pid in self.candidates():
                    os.kill(pid, signal.SIGKILL)
                    self.killed.append(pid)
                    return
            self.stop.wait(0.02)  # polling /proc: no event says "a worker is busy"

    def finish(self) -> list[int]:
        self.stop.set()
        self.join(timeout=30)
        return self.killed


def _worker_facts() -> tuple[int, str, int]:
    import torch

    return torch.get_num_threads(), os.environ["OMP_NUM_THREADS"], os.getppid()


def test_local_workers_take_their_share_of_the_cores_and_come_from_the_fork_server():
    """``--jobs 2`` workers must not each spin up threads for every core (they would fight over them),
    even though torch was imported before they started (by the fork server they are forked from, so
    each one does not import it again)."""
    from motion_server.animate.workers import LocalBackend

    backend = LocalBackend(jobs=2)
    try:
        threads, omp, parent = backend._pool.submit(_worker_facts).result(timeout=300)
    finally:
        backend.close()
    share = max(1, (os.cpu_count() or 1) // 2)
    assert (threads, omp) == (share, str(share))
    if "forkserver" in __import__("multiprocessing").get_all_start_methods():
        assert parent != os.getpid() and "multiprocessing.forkserver" in _cmdline(parent)


def test_a_worker_killed_mid_batch_is_replaced_and_its_input_retried(tmp_path):
    clips(tmp_path / "audio", 8)
    proc = subprocess.Popen([sys.executable, "-m", "motion_server", "animate", "audio", *FAST, "--out",
                             "out/{stem}.csv", "--jobs", "2", "--report", "r.json"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killer = KillOneWorker(tmp_path / "out", proc, lambda: _pool_workers(proc.pid)[:1])
    out, err = proc.communicate(timeout=600)
    assert killer.finish(), "no busy worker process was found to kill"
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"ok": 8, "skipped": 0, "failed": 0}
    assert max(r["attempts"] for r in report["inputs"]) >= 2  # what the dead worker held was run again
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")) == \
        [f"line{i:02d}.csv" for i in range(8)]


# -- Ray -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_cluster():
    """A real two-node Ray cluster on this machine (ray.cluster_utils), one CPU per node."""
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'talkrig[ray]'")
    from ray.cluster_utils import Cluster

    # `--ray auto` elsewhere in the suite joins any cluster running here: hold the machine's Ray turn
    with machine_lock("ray", RAY_LOCK_S, "the Ray cluster another test file holds"):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_ray_batch_on_two_nodes_matches_local_and_survives_a_killed_worker(ray_cluster, tmp_path):
    clips(tmp_path / "audio", 6)
    local = talkrig("audio", *FAST, "--out", "local/{stem}.csv", cwd=tmp_path)
    assert local.returncode == 0, local.stderr[-2000:]
    proc = subprocess.Popen([sys.executable, "-m", "motion_server", "animate", "audio", *FAST, "--out",
                             "ray/{stem}.csv", "--ray", ray_cluster.address, "--report", "r.json"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Ray's worker processes belong to the cluster, not to the command: found by their process title
    killer = KillOneWorker(tmp_path / "ray", proc, lambda: [
        pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        if _cmdline(pid).startswith("ray::ray_motion_task")][:1])
    out, err = proc.communicate(timeout=600)
    killed = killer.finish()
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"ok": 6, "skipped": 0, "failed": 0}
    assert report["backend"].startswith("Ray (2 node(s)")
    for i in range(6):
        np.testing.assert_array_equal(curves(tmp_path / "local" / f"line{i:02d}.csv"),
                                      curves(tmp_path / "ray" / f"line{i:02d}.csv"))
    assert killed, "no busy Ray worker was found to kill"
    assert max(r["attempts"] for r in report["inputs"]) >= 2  # the killed task ran again elsewhere


def test_workers_load_the_commands_modules_not_lookalikes_in_the_working_folder(tmp_path):
    """Run from a folder that holds a file named like a dependency (a user's own ``soxr.py``): the
    ``--jobs 2`` workers must import what the command imports, not that file (Python 3.11's fork server
    imports its preloads with the current folder first on its path)."""
    import soundfile as sf

    from motion_server.audio.io import load_audio
    from motion_server.dsp import resample

    (tmp_path / "audio").mkdir()
    x = resample(load_audio(CLIP), 16000, 22050)  # not 16 kHz: every line is resampled (soxr)
    for i in range(2):
        sf.write(tmp_path / "audio" / f"line{i}.flac", x, 22050)
    (tmp_path / "soxr.py").write_text("raise SystemExit('the working folder soxr.py was imported')\n")
    talkrig = Path(sys.executable).parent / "talkrig"  # the console script: the working folder is not on its path
    if not talkrig.exists():
        pytest.skip("the talkrig console script is not installed next to this Python")
    r = subprocess.run([str(talkrig), "animate", "audio", *FAST, "--out", "out/{stem}.csv", "--jobs", "2",
                        "--report", "r.json"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["counts"] == {"ok": 2, "skipped": 0, "failed": 0}
