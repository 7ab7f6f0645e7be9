"""`talkrig bench` end to end: JSON with real-time factor and memory; plug-in benchmark discovery."""

from __future__ import annotations

import json
import subprocess
import sys

from motion_server import bench


def test_bench_energy_writes_rtf_and_memory(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "motion_server", "bench", "--engine", "energy", "--durations", "10",
                        "--repeats", "1", "--warmup", "0", "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert data["format"] == "talkrig-bench" and data["machine"]["cpu_count"] >= 1
    (row,) = data["results"]
    assert row["engine"] == "energy" and row["duration_s"] == 10
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
