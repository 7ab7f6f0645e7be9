"""`talkrig eval` reports the motion statistics per clip and per suite next to the real references."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from conftest import REPO

from motion_server.evaluation.motion_stats import STAT_KEYS


def test_eval_json_and_table_hold_motion_stats_and_targets(tmp_path):
    user = tmp_path / "clips"
    user.mkdir()
    shutil.copy(REPO / "examples" / "jfk.flac", user / "jfk.flac")  # no transcript: phone metrics skipped
    out = tmp_path / "eval.json"
    r = subprocess.run([sys.executable, "-m", "motion_server", "eval", "--engine", "energy", "--baselines", "none",
                        "--suite", "all", "--shared-dir", str(tmp_path / "none"), "--user-dir", str(user),
                        "--json", str(out), "--per-clip"], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    suite = data["suites"]["user"]
    (row,) = suite["rows"]
    assert set(STAT_KEYS) <= set(row["motion_stats"])
    assert row["motion_stats"]["head_std_yaw_deg"] == 0.0  # the energy engine keeps the head still
    assert row["motion_stats"]["jaw_open_p90"] > 0.1
    # old keys stay where they were; the block is not averaged into the means
    assert "head_std_deg" in suite["means"]["energy"] and "motion_stats" not in suite["means"]["energy"]
    med = suite["motion_stats"]["energy"]
    assert med["clips"] == 1 and med["jaw_open_p90"] == row["motion_stats"]["jaw_open_p90"]
    t = data["motion_targets"]
    assert set(STAT_KEYS) <= set(t) and 1.0 < t["head_std_yaw_deg"]["value"] < 5.0
    assert "motion against real people" in r.stdout and "browInnerUp std" in r.stdout and "pitch sd" in r.stdout
