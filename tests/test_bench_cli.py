"""`talkrig bench` end to end: JSON with real-time factor and memory; plug-in benchmark discovery."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from waiting import RAY_LOCK_S, machine_lock

from motion_server import bench


def test_bench_procedural_and_energy_write_rtf_and_memory(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "motion_server", "bench", "--engine", "procedural,energy",
                        "--durations", "10", "--repeats", "1", "--warmup", "0", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["format"] == "talkrig-bench" and data["machine"]["cpu_count"] >= 1
    proc, row = data["results"]
    # The procedural engine (phone recognition + performer): a real-time factor and its memory.
    assert proc["engine"] == "procedural" and proc["device"] == "cpu" and proc["duration_s"] == 10
    assert proc["rtf_median"] == 10 / proc["wall_median_s"] and proc["rtf_median"] > 0.2
    assert proc["peak_rss_mib"] > 10 and proc["rss_before_mib"] > 10 and proc["first_call_s"] > 0
    assert row["engine"] == "energy" and row["duration_s"] == 10
    assert row["audio"] == "jfk.flac"  # real speech shipped in the repository, even without ../shared
    assert row["rtf_median"] > 1  # a loudness envelope is far faster than real time
    assert row["rtf_median"] == 10 / row["wall_median_s"]
    assert row["peak_rss_mib"] > 10
    assert "RTF" in r.stdout
    # Refuses to replace the JSON unless --overwrite is given.
    r2 = subprocess.run([sys.executable, "-m", "motion_server", "bench", "--engine", "energy", "--durations", "10",
                         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r2.returncode == 2 and "--overwrite" in r2.stderr


def test_benchmarks_are_discovered_and_unknown_ones_named():
    assert "engine" in bench.available()
    assert "timing" not in bench.available()
    try:
        bench.load("no_such_bench")
    except bench.BenchmarkNotFound as exc:
        assert "motion_server/bench/no_such_bench.py" in str(exc)
    else:
        raise AssertionError("expected BenchmarkNotFound")


def _bench(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", "bench", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bench_server_measures_round_trip_overhead_through_a_real_server(tmp_path):
    out = tmp_path / "server.json"
    r = _bench("--what", "server", "--engine", "energy", "--durations", "3", "--repeats", "2", "--warmup", "1",
               "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    (row,) = json.loads(out.read_text())["results"]
    assert row["what"] == "server" and row["engine"] == "energy" and len(row["times_s"]) == 2
    # The round trip holds the engine's time plus a positive transport/decode overhead.
    assert row["round_trip_median_s"] > row["engine_median_s"] > 0
    assert row["overhead_median_ms"] > 0 and row["ping_median_ms"] > 0
    assert row["first_call_s"] > 0 and row["server_peak_rss_mib"] > 10
    assert "overhead ms" in r.stdout


def test_bench_blender_times_keying_and_both_exports(tmp_path):
    out = tmp_path / "blender.json"
    r = _bench("--what", "blender", "--durations", "1", "--repeats", "2", "--warmup", "0", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["name"]: row for row in json.loads(out.read_text())["results"]}
    assert set(rows) == {"apply_motion", "read_back", "export_gltf", "export_fbx"}
    for row in rows.values():
        assert row["what"] == "blender" and row["repeats"] == 2 and len(row["times_s"]) == 2
        assert row["min_s"] <= row["median_s"] <= row["max_s"] and row["peak_rss_mib"] > 50
    assert rows["apply_motion"]["frames"] == 30 and rows["export_gltf"]["file_mb"] > 0.1


def test_bench_animate_batch_runs_every_setting_interleaved_and_compares_them(tmp_path):
    """The batch bench a pipeline engineer reruns: each round runs --jobs 1, --jobs 2 and --ray auto (own
    cluster, then a running one) once; the rows hold every run and the comparisons their medians."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'talkrig[ray]'")
    out = tmp_path / "batch.json"
    # --ray auto joins whichever cluster runs on this machine: take the Ray turn the other tests share
    with machine_lock("ray", RAY_LOCK_S, "the Ray cluster another test file holds"):
        r = _bench("--what", "animate-batch", "--library", "scripted", "--clips", "2", "--repeats", "2",
                   "--json", str(out), timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = {row["setting"]: row for row in json.loads(out.read_text())["results"]}
    for label in ("jobs 1", "jobs 2", "ray auto", "ray auto, running cluster"):
        row = rows[f"scripted, {label}"]
        assert "error" not in row, row.get("error")
        assert row["clips"] == 2 and len(row["wall_runs_s"]) == 2 and row["wall_s"] > 0
    speed = rows["scripted: jobs 2 vs jobs 1"]
    # the walls in the rows are rounded to 10 ms; the speedup is of the unrounded medians
    assert speed["speedup"] == pytest.approx(rows["scripted, jobs 1"]["wall_s"] / rows["scripted, jobs 2"]["wall_s"],
                                             rel=0.01)
    assert len(speed["round_speedups"]) == 2 and speed["goal"] == ">= 1.6"
    assert {"scripted: ray auto vs jobs 2", "scripted: ray auto, running cluster vs jobs 2"} <= set(rows)
    assert not any(k.startswith("unscripted") for k in rows)  # --library scripted only
    assert "jobs 2 vs jobs 1:" in r.stdout  # the comparison's number is in the table, not only the JSON
