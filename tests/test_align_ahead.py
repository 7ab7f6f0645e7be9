"""Scripts aligned ahead by `talkrig animate` while its workers start (motion_server/animate/prealign.py):
the worker gets the phones with the task, and the motion is the one the engine makes aligning the script
itself, also where the script cannot be aligned. Real model, real aligner, real worker processes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
from waiting import wait_until

from motion_server.animate.prealign import AHEAD_MAX_S, AheadAligner, align_ahead, aligns_ahead
from motion_server.audio.io import load_audio
from motion_server.engine.base import CancelToken, GenerateOptions
from motion_server.model import DEFAULT_CHECKPOINT

WRONG_SCRIPT = "the quick brown fox jumps over the lazy dog"  # not what hello_flite says: cannot be aligned


@pytest.fixture(scope="module")
def engine():
    from motion_server.model.engine import DiffusionEngine

    return DiffusionEngine(device="cpu")


@pytest.mark.parametrize("script", ["given", "wrong"])
def test_phones_aligned_ahead_give_the_motion_the_engine_makes_aligning_itself(engine, hello_flite, script):
    text = hello_flite.transcript if script == "given" else WRONG_SCRIPT
    audio = load_audio(hello_flite.path, sr=16000)
    options = GenerateOptions(transcript=text, seed=3)
    itself = engine.generate(audio, 16000, options)
    aligned = align_ahead(hello_flite.path, options, sidecar=False)
    assert aligned is not None and aligned.note is None
    ahead = aligned.options
    assert ahead.transcript == text and aligned.seconds > 0
    assert (len(ahead.phones) > 0) == (script == "given")  # [] says: tried, could not be aligned
    given = engine.generate(audio, 16000, ahead)
    np.testing.assert_array_equal(given.weights, itself.weights)
    np.testing.assert_array_equal(given.head, itself.head)
    assert given.meta["phones"] == itself.meta["phones"] == ("aligned" if script == "given"
                                                             else "none (alignment failed)")


def test_a_line_without_a_script_a_long_take_or_unreadable_audio_is_left_to_its_worker(hello_flite, jfk, tmp_path):
    with_sidecar = align_ahead(hello_flite.path, GenerateOptions(), sidecar=True)  # hello_flite.txt beside it
    typed = align_ahead(hello_flite.path, GenerateOptions(transcript=hello_flite.transcript), sidecar=False)
    assert with_sidecar is not None and typed is not None and with_sidecar.options.phones == typed.options.phones
    # the worker gets the text that was aligned (the .txt may change before its turn comes), and the
    # summary still says where it came from
    assert with_sidecar.options.transcript == hello_flite.transcript
    assert with_sidecar.note == "transcript from hello_flite.txt"
    assert align_ahead(hello_flite.path, GenerateOptions(transcript="hallo", language="de"), False) is None
    # over AHEAD_MAX_S: pocketsphinx would hold the GIL (the scheduler, Ctrl-C) for the whole first pass
    import soundfile as sf

    long_take = tmp_path / "long.flac"
    jfk_audio = load_audio(jfk.path, sr=16000)
    sf.write(long_take, np.tile(jfk_audio, int(AHEAD_MAX_S * 16000 // jfk_audio.size) + 1), 16000)
    assert align_ahead(long_take, GenerateOptions(transcript=jfk.transcript), False) is None
    bare = tmp_path / "bare.flac"
    shutil.copy(hello_flite.path, bare)
    assert align_ahead(bare, GenerateOptions(), sidecar=True) is None  # nothing to align: it is recognised
    stopped = CancelToken()
    stopped.cancel()  # the workers are up, or Ctrl-C: the line is left to its worker
    assert align_ahead(hello_flite.path, GenerateOptions(transcript=hello_flite.transcript), False, stopped) is None
    broken = tmp_path / "broken.flac"
    broken.write_bytes(b"not audio at all")
    assert align_ahead(broken, GenerateOptions(transcript="hello"), sidecar=False) is None


def test_lines_are_aligned_ahead_only_for_an_in_process_model_that_reads_phones(tmp_path):
    assert aligns_ahead("diffusion", None, None)  # the bundled model reads phones
    assert aligns_ahead("diffusion", str(DEFAULT_CHECKPOINT), None)
    assert not aligns_ahead("procedural", None, None)
    assert not aligns_ahead("diffusion", None, "tcp://127.0.0.1:5555")  # the server's pipeline aligns
    no_phones = tmp_path / "no_phones"
    no_phones.mkdir()
    cfg = json.loads((DEFAULT_CHECKPOINT / "config.json").read_text())
    cfg.pop("phones")
    (no_phones / "config.json").write_text(json.dumps(cfg))
    assert not aligns_ahead("diffusion", str(no_phones), None)
    (no_phones / "config.json").write_text("{ cut off")
    assert not aligns_ahead("diffusion", str(no_phones), None)  # the worker reports the broken checkpoint


def test_the_aligner_thread_goes_last_line_first_and_skips_a_line_already_taken(hello_flite, monkeypatch):
    import motion_server.animate.prealign as prealign

    order: list[str] = []
    taken = threading.Event()

    def held(audio, *args):  # the thread waits on its first line until line 2 has been taken
        order.append(audio.stem)
        wait_until(taken.is_set, 60, "line 2 to be taken")
        return None

    monkeypatch.setattr(prealign, "align_ahead", held)
    lines = [(i, hello_flite.path.with_name(f"{i}.flac"), GenerateOptions(transcript="hello")) for i in range(4)]
    ahead = AheadAligner(lines, sidecar=False)
    wait_until(lambda: order, 60, "the thread to start on a line")
    assert ahead.take(2) is None  # submitted before the thread got to it: its worker aligns it
    taken.set()
    wait_until(ahead.finished, 60, "the thread to go through the lines")
    assert order == ["3", "1", "0"]  # last line first; line 2 skipped once taken


def test_stopping_the_thread_ends_it_without_finishing_the_queue(hello_flite):
    lines = [(i, hello_flite.path, GenerateOptions(transcript=hello_flite.transcript)) for i in range(40)]
    ahead = AheadAligner(lines, sidecar=False)
    ahead.stop()  # returns once the line being aligned is done (short lines: a fraction of a second)
    assert ahead.finished()
    done = [i for i in range(40) if ahead.take(i) is not None]
    assert len(done) < 40 and all(ahead.take(i).options.phones for i in done)


def test_two_workers_with_lines_aligned_ahead_make_the_curves_one_process_makes(hello_flite, tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(6):
        shutil.copy(hello_flite.path, audio / f"line{i}.flac")
        script = WRONG_SCRIPT if i == 5 else hello_flite.transcript
        (audio / f"line{i}.txt").write_text(script + "\n")

    def animate(jobs: int) -> dict:
        r = subprocess.run([sys.executable, "-m", "motion_server", "animate", "audio", "--out", f"j{jobs}/{{stem}}.csv",
                            "--jobs", str(jobs), "--report", f"j{jobs}.json"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        return json.loads((tmp_path / f"j{jobs}.json").read_text())

    one, two = animate(1), animate(2)
    from rig_mapping.formats import load_motion

    for i in range(6):
        np.testing.assert_array_equal(load_motion(tmp_path / "j1" / f"line{i}.csv").weights,
                                      load_motion(tmp_path / "j2" / f"line{i}.csv").weights)
    assert all(r["aligned_ahead_s"] is None for r in one["inputs"])  # one process: nothing starts apart
    # the workers take ~2 s to start; the last lines' scripts are aligned meanwhile
    assert any(r["aligned_ahead_s"] is not None for r in two["inputs"]), two["inputs"]
    assert all("transcript from" in " ".join(r["notes"]) for r in two["inputs"])  # the .txt noted as before
