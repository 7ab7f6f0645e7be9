"""`talkrig plot`: a PNG of the expected size from an audio file (generated) or a saved motion."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest
from conftest import REPO

pytest.importorskip("matplotlib")


def _plot(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", "plot", *args], capture_output=True, text=True,
                          timeout=600, cwd=REPO)


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", head[16:24])


def test_plot_from_audio_writes_a_png_of_the_asked_size_and_never_overwrites_unasked(tmp_path):
    out = tmp_path / "jfk.png"
    r = _plot(str(REPO / "examples" / "jfk.flac"), "--engine", "energy", "--size", "1200x900", "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert _png_size(out) == (1200, 900)
    before = out.read_bytes()
    r = _plot(str(REPO / "examples" / "jfk.flac"), "--engine", "energy", "--out", str(out))
    assert r.returncode == 2 and "--overwrite" in r.stderr and out.read_bytes() == before
    r = _plot(str(REPO / "examples" / "jfk.flac"), "--engine", "energy", "--out", str(tmp_path / "x.jpg"))
    assert r.returncode == 2 and "png" in r.stderr.lower()


def test_plot_saved_motion_with_and_without_audio(tmp_path):
    from motion_server.audio.io import load_audio
    from motion_server.engine.base import GenerateOptions
    from motion_server.engine.energy import EnergyEngine
    from rig_mapping.formats import save_motion

    audio = load_audio(REPO / "examples" / "jfk.flac", sr=16000)
    motion = EnergyEngine().generate(audio, 16000, GenerateOptions())
    save_motion(motion, tmp_path / "take.csv")
    r = _plot(str(tmp_path / "take.csv"), "--audio", str(REPO / "examples" / "jfk.flac"), "--out",
              str(tmp_path / "a.png"))
    assert r.returncode == 0, r.stderr[-3000:]
    assert _png_size(tmp_path / "a.png") == (1600, 1200)
    r = _plot(str(tmp_path / "take.csv"), "--out", str(tmp_path / "b.png"), "--overwrite")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _png_size(tmp_path / "b.png") == (1600, 1200)
