"""``talkrig map-report`` run as a user would: a subprocess on a names file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from motion_server.cli import main
from rig_mapping import ARKIT_NAMES


def talkrig(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", *args], capture_output=True, text=True,
                          timeout=120)


def talkrig_inproc(capsys, *args: str) -> tuple[int, str, str]:
    """Same entry point in this process (cheaper) for the follow-up and error cases."""
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture()
def ict_file(repo_dir: Path, tmp_path: Path) -> Path:
    names = [str(n) for n in np.load(repo_dir / "motion_server/assets/ict_face_arkit.npz")["names"]]
    p = tmp_path / "ict_shapes.txt"
    p.write_text("# shape keys of the ICT face\n" + "\n".join(names) + "\n\n")
    return p


def test_map_report_text_and_json(ict_file: Path, tmp_path: Path):
    r = talkrig("map-report", "--names", str(ict_file))
    assert r.returncode == 0, r.stderr
    assert "Chosen profile: suffix_lr" in r.stdout
    assert "browInnerUp_L" in r.stdout and "Unused ARKit channels (1): tongueOut" in r.stdout
    j = talkrig("map-report", "--names", str(ict_file), "--json")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    assert doc["chosen"] == "suffix_lr" and doc["unmatched_channels"] == ["tongueOut"]
    assert doc["matched"]["cheekPuff_R"] == ["cheekPuff"] and doc["n_character_shapes"] == 53


def test_map_report_with_a_named_profile_bones_and_save(ict_file: Path, tmp_path: Path, capsys):
    bones = tmp_path / "bones.txt"
    bones.write_text("root\nHead\nJaw\n")
    out = tmp_path / "ict_profile.toml"
    s = talkrig("map-report", "--names", str(ict_file), "--bones", str(bones), "--save-profile", str(out))
    assert s.returncode == 0, s.stderr
    assert out.is_file() and "Profile written" in s.stdout and "Bones (bones_head_jaw)" in s.stdout
    rc, stdout, _ = talkrig_inproc(capsys, "map-report", "--names", str(ict_file), "--profile", str(out), "--json")
    assert rc == 0 and json.loads(stdout)["matched"]["browInnerUp_R"] == ["browInnerUp"]
    before = out.read_text()
    rc, _, err = talkrig_inproc(capsys, "map-report", "--names", str(ict_file), "--save-profile", str(out))
    assert rc == 2 and "--overwrite" in err and out.read_text() == before  # never replaced unasked
    for flag in ("--overwrite", "--force"):  # --force is kept as an alias
        rc, _, err = talkrig_inproc(capsys, "map-report", "--names", str(ict_file), "--profile", "arkit",
                                    "--save-profile", str(out), flag)
        assert rc == 0, err
        assert "suffix_lr" not in out.read_text()
        out.write_text(before)
    rc, stdout, _ = talkrig_inproc(capsys, "map-report", "--names", str(ict_file), "--profile", "vrm", "--json")
    doc = json.loads(stdout)
    assert rc == 0 and doc["chosen"] == "vrm" and doc["matched"] == {} and len(doc["unmatched_shapes"]) == 53


def test_map_report_maps_a_rocketbox_list_onto_all_52(tmp_path: Path, capsys):
    """The issue's example: AK_01_BrowDownLeft ... AK_52_TongueOut (numbered in alphabetical ARKit order)."""
    names = [f"AK_{i:02d}_{n[0].upper()}{n[1:]}" for i, n in enumerate(sorted(ARKIT_NAMES), 1)]
    assert names[0] == "AK_01_BrowDownLeft" and names[24] == "AK_25_JawOpen" and names[-1] == "AK_52_TongueOut"
    f = tmp_path / "rocketbox.txt"
    f.write_text("\n".join(names) + "\n")
    rc, stdout, err = talkrig_inproc(capsys, "map-report", "--names", str(f), "--json")
    assert rc == 0, err
    doc = json.loads(stdout)
    assert doc["chosen"] == "rocketbox" and doc["unmatched_channels"] == [] and doc["unmatched_shapes"] == []
    assert len(doc["matched"]) == 52
    assert doc["matched"]["AK_01_BrowDownLeft"] == ["browDownLeft"]
    assert doc["matched"]["AK_52_TongueOut"] == ["tongueOut"]
    # Every name drives the ARKit channel it spells, so no channel is driven twice.
    assert sorted(c for (c,) in doc["matched"].values()) == sorted(ARKIT_NAMES)
    rc, stdout, _ = talkrig_inproc(capsys, "map-report", "--names", str(f))
    assert rc == 0 and "52 of 52 ARKit channels used" in stdout


def test_map_report_errors(tmp_path: Path, capsys):
    rc, _, err = talkrig_inproc(capsys, "map-report", "--names", str(tmp_path / "nope.txt"))
    assert rc == 2 and "nope.txt" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    rc, _, err = talkrig_inproc(capsys, "map-report", "--names", str(empty))
    assert rc == 2 and "no names" in err
    names = tmp_path / "n.txt"
    names.write_text("jawOpen\n")
    rc, _, err = talkrig_inproc(capsys, "map-report", "--names", str(names), "--profile", "nosuch")
    assert rc == 2 and "no preset named 'nosuch'" in err
    rc, _, err = talkrig_inproc(capsys, "map-report", "--names", str(names), "--profile", "vrm",
                                "--save-profile", str(tmp_path / "empty.toml"))
    assert rc == 2 and "no shape or bone matched" in err and not (tmp_path / "empty.toml").exists()
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("mâchoire\n".encode("latin-1"))
    rc, _, err = talkrig_inproc(capsys, "map-report", "--names", str(latin1))
    assert rc == 2 and "not UTF-8" in err
