"""`talkrig eval` end to end on real recordings and on a user folder with ground truth."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from motion_server.audio.io import load_audio
from motion_server.engine.base import GenerateOptions
from motion_server.engine.energy import EnergyEngine


def _eval(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", "eval", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_eval_real_scores_engine_and_both_baselines(shared_dir, tmp_path):
    out = tmp_path / "eval.json"
    r = _eval("--engine", "procedural", "--suite", "real", "--limit", "2", "--shared-dir", str(shared_dir),
              "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["engine"] == "procedural" and data["git_commit"] and data["machine"]["cpu_count"]
    real = data["suites"]["real"]
    assert set(real["means"]) == {"procedural", "energy", "procedural_recognised"}
    assert len(real["rows"]) == 6  # 2 clips x 3 systems
    for system, m in real["means"].items():
        for key in ("bilabial_closure", "open_bilabial_ratio", "lag_frames", "jitter_mouth_jaw",
                    "blink_rate_per_min", "blink_duration_s", "head_std_deg", "head_speed_deg_s"):
            assert key in m, (system, key)
    # Diversity across seeds is on by default (2 seeds) for the evaluated engine.
    assert real["means"]["procedural"]["diversity"] > 0
    # Phone-aware performer closes the lips for /p b m/; a loudness envelope cannot.
    assert real["means"]["procedural"]["bilabial_closure"] > real["means"]["energy"]["bilabial_closure"]
    assert "closure" in r.stdout


def test_eval_user_folder_against_its_own_ground_truth(shared_dir, tmp_path):
    """A folder clip whose ground truth is exactly what the energy engine makes: errors ~0, corr ~1."""
    from rig_mapping.formats import save_motion

    speech = shared_dir / "data" / "speech"
    stem = "pocketsphinx__sense_and_sensibility_01_austen_64kb-0880"
    user = tmp_path / "clips"
    user.mkdir()
    shutil.copy(speech / f"{stem}.wav", user / "take1.wav")
    shutil.copy(speech / f"{stem}.phone.json", user / "take1.phone.json")
    (user / "take1.txt").write_text("he was not an ill disposed young man\n")
    audio = load_audio(user / "take1.wav", sr=16000)
    save_motion(EnergyEngine().generate(audio, 16000, GenerateOptions()), user / "take1.csv")
    out = tmp_path / "user.json"
    r = _eval("--engine", "energy", "--baselines", "none", "--suite", "real", "--shared-dir", str(tmp_path / "none"),
              "--user-dir", str(user), "--json", str(out))
    assert r.returncode == 2 and "MANIFEST" in r.stderr  # real suite asked for, shared folder missing
    r = _eval("--engine", "energy", "--baselines", "none", "--suite", "all", "--shared-dir",
              str(tmp_path / "none"), "--user-dir", str(user), "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    row, truth = json.loads(out.read_text())["suites"]["user"]["rows"]
    assert truth["system"] == "ground_truth" and "lip_vertex_error_cm" not in truth
    assert truth["jitter_mouth_jaw"] == pytest.approx(row["jitter_mouth_jaw"], rel=1e-3)  # same motion
    assert row["phones_source"] == "given" and row["n_phones"] > 10
    assert row["lip_vertex_error_cm"] < 0.05 and row["mae_mouth_jaw"] < 0.01
    assert row["lip_gap_corr"] == pytest.approx(1.0, abs=0.01)
    assert np.isfinite(row["open_bilabial_ratio"])


def test_eval_synthetic_split_has_ground_truth_metrics(tmp_path):
    from motion_server.synth.corpus import CorpusOptions, build_corpus

    corpus = tmp_path / "corpus"
    m = build_corpus(corpus, CorpusOptions(hours=0.001, shard_size=4, test_sentences=0.5, augment=False),
                     max_shards=1, progress=False)
    if not m["counts"]["test"]:
        pytest.skip("the tiny corpus drew no test utterance")
    out = tmp_path / "syn.json"
    r = _eval("--engine", "energy", "--baselines", "none", "--suite", "synthetic", "--data", str(corpus),
              "--limit", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    data = json.loads(out.read_text())["suites"]["synthetic"]
    row, truth = data["rows"]
    assert set(data["means"]) == {"energy", "ground_truth"}
    # the performer's own targets: the reference range for jitter, head motion and lip closure
    assert truth["system"] == "ground_truth" and truth["head_std_deg"] > 0
    if truth.get("bilabial_closure") is not None:
        assert truth["bilabial_closure"] == 1.0
    assert row["phones_source"] == "corpus"
    for key in ("lip_vertex_error_cm", "mae_mouth_jaw", "lip_gap_corr", "fdd_cm", "head_error_deg",
                "bilabial_closure", "open_bilabial_ratio"):
        assert key in row
    assert row["lip_vertex_error_cm"] > 0.05  # a loudness envelope is not the performer's motion


def test_eval_val_split_scores_the_validation_clips_not_the_test_clips(tmp_path):
    """Settings are tuned on --split val; the test split stays unseen."""
    from motion_server.synth.corpus import CorpusOptions, CorpusReader, build_corpus

    corpus = tmp_path / "corpus"
    m = build_corpus(corpus, CorpusOptions(hours=0.01, shard_size=8, test_sentences=0.3, val_sentences=0.3,
                                           augment=False), max_shards=2, progress=False)
    assert m["counts"]["val"] and m["counts"]["test"]  # held-out sentences go to both (seeded)
    names = {split: {f"{u.voice}#{u.index}" for u in CorpusReader(corpus, split)} for split in ("val", "test")}
    assert names["val"].isdisjoint(names["test"])
    for split in ("val", "test"):
        out = tmp_path / f"{split}.json"
        r = _eval("--engine", "energy", "--baselines", "none", "--suite", "synthetic", "--data", str(corpus),
                  "--split", split, "--json", str(out))
        assert r.returncode == 0, r.stderr[-3000:]
        data = json.loads(out.read_text())
        assert data["data_split"] == split
        scored = {row["clip"] for row in data["suites"]["synthetic"]["rows"]}
        assert scored == names[split]
    r = _eval("--engine", "energy", "--suite", "synthetic", "--data", str(corpus), "--split", "train")
    assert r.returncode == 2 and "--split" in r.stderr  # the training split is not an evaluation set
    manifest = json.loads((corpus / "MANIFEST.json").read_text())
    manifest["counts"]["val"] = 0  # as a corpus whose held-out speakers all went to test
    (corpus / "MANIFEST.json").write_text(json.dumps(manifest))
    r = _eval("--engine", "energy", "--suite", "synthetic", "--data", str(corpus), "--split", "val")
    assert r.returncode == 2 and "no val utterances" in r.stderr and "--split" in r.stderr
    r = _eval("--engine", "energy", "--suite", "real", "--split", "val")
    assert r.returncode == 2 and "--suite synthetic" in r.stderr  # no corpus scored: said, not ignored


def test_eval_user_folder_with_a_broken_ground_truth_names_the_file(jfk, tmp_path, capsys):
    from motion_server.cli import main

    user = tmp_path / "clips"
    user.mkdir()
    shutil.copy(jfk.path, user / "take1.flac")
    (user / "take1.csv").write_text("Timecode,BlendShapeCount,JawOpen\n00:00:00:00.000,61,0.5\n")
    out = tmp_path / "broken.json"
    rc = main(["eval", "--engine", "energy", "--baselines", "none", "--suite", "all", "--shared-dir",
               str(tmp_path / "none"), "--user-dir", str(user), "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "take1.csv, line 1" in err and "EyeBlinkLeft" in err and "without ground truth" in err
    assert "Traceback" not in err
    assert "take1.csv" in json.loads(out.read_text())["suites"]["user"]["error"]  # the JSON says why
    assert main(["eval", "--engine", "energy", "--suite", "all", "--user-dir", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    # An engine that cannot start is named with the fix, not a traceback.
    assert main(["eval", "--engine", "diffusion", "--model", str(tmp_path / "no_ckpt"), "--suite", "all",
                 "--user-dir", str(user)]) == 2
    err = capsys.readouterr().err
    assert "cannot start engine 'diffusion'" in err and "--model CHECKPOINT_DIR" in err and "Traceback" not in err


def test_user_folder_notes_a_ground_truth_of_another_length(jfk, tmp_path):
    from motion_server.evaluation.suites import user_clips
    from rig_mapping import FaceMotion
    from rig_mapping.formats import save_motion

    shutil.copy(jfk.path, tmp_path / "take.flac")
    save_motion(FaceMotion.neutral(30), tmp_path / "take.npz")  # 1 s of truth for 11 s of audio
    (clip,) = user_clips(tmp_path)
    assert clip.gt is not None and clip.gt.n_frames == 30 and clip.phones is None
    assert any("lasts 1.00 s" in n for n in clip.notes) and any("no transcript" in n for n in clip.notes)


def test_a_clip_an_engine_fails_on_is_recorded_and_the_rest_still_scored():
    from motion_server.evaluation.runner import build_systems, means, run_clip
    from motion_server.evaluation.suites import EvalClip

    systems = build_systems("energy", baselines=())
    t = np.arange(16000) / 16000
    good = EvalClip("tone", (0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), 16000)
    empty = EvalClip("empty", np.zeros(0, np.float32), 16000, notes=["zero-length file"])
    rows = [*run_clip(empty, systems, GenerateOptions()), *run_clip(good, systems, GenerateOptions())]
    assert "audio is empty" in rows[0]["error"] and rows[0]["notes"] == ["zero-length file"]
    assert "error" not in rows[1] and rows[1]["frames"] == 30
    m = means(rows)["energy"]
    assert m["clips"] == 2 and m["failed"] == 1 and m["frames"] == 30  # means over the clip that ran
