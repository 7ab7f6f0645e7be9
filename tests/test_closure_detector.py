"""The lip-closure detector: trained from a corpus's phone timings, its threshold fitted and stored, and
audio-only generation shutting the lips where it fires (through the transcript path's constraint)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_server.cli import main
from motion_server.engine.base import GenerateOptions
from motion_server.evaluation.geometry import lip_gap
from motion_server.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from motion_server.model.closure_detector import closure_events, event_scores
from motion_server.model.engine import DiffusionEngine
from motion_server.model.phone_track import DEFAULT_SYMBOLS
from motion_server.model.toy import toy_clip
from motion_server.phones import Phone
from motion_server.synth.corpus import CorpusOptions, build_corpus
from motion_server.synth.speech import get_backend

REPO = Path(__file__).resolve().parents[1]
SHIPPED_PART = REPO / "motion_server" / "model" / "configs" / "parts" / "closure_detector.json"
SHUT_CM = 0.15  # the closure metric's threshold (motion_server.evaluation.metrics.CLOSURE_THRESHOLD_CM)
FPS = 30.0


def test_detections_become_bilabial_events_spanning_each_run() -> None:
    prob = np.array([0, 0.9, 0.95, 0, 0, 0.6, 0, 0.7, 0.8, 0.9], np.float32)
    ev = closure_events(prob, FPS, 0.5)
    assert [(p.symbol, round(p.start * FPS), round(p.end * FPS)) for p in ev] == [
        ("P", 1, 3), ("P", 5, 6), ("P", 7, 10)]
    assert closure_events(prob, FPS, 0.5, min_frames=2) == [ev[0], ev[2]]
    assert closure_events(np.zeros(10), FPS, 0.5) == []


def test_event_scores_count_caught_bilabials_and_shut_open_vowels() -> None:
    ident = {s: i + 1 for i, s in enumerate(DEFAULT_SYMBOLS)}
    track = np.array([ident["AA"]] * 10 + [ident["M"]] * 3 + [ident["AA"]] * 10 + [ident["B"]] * 2 + [0] * 5)
    hit = np.zeros(len(track))
    hit[10:13] = 1.0  # the /m/ heard, the /b/ missed
    caught, total, shut_open, n_open = event_scores(hit, track, FPS, 0.5)
    assert (caught, total) == (1, 2) and n_open == 20 and shut_open <= 2  # the ramp only grazes the vowels
    everywhere = np.ones(len(track))
    c2, _, shut2, _ = event_scores(everywhere, track, FPS, 0.5)
    assert c2 == 2 and shut2 >= 12  # one long run: its middle 60 % is shut, as for a long aligned /m/


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not get_backend("espeak").available():
        pytest.skip("espeak-ng is not installed (sudo apt-get install espeak-ng)")
    out = tmp_path_factory.mktemp("corpus") / "c"
    build_corpus(out, CorpusOptions(seed=3, hours=0.02, voices=("espeak",), shard_size=8), workers=1,
                 progress=False)
    return out


@pytest.fixture(scope="module")
def part(tmp_path_factory) -> Path:
    """A detector small enough for the tiny model, reading every feature column (tiny has no speech encoder)."""
    p = tmp_path_factory.mktemp("part") / "closure_detector.json"
    p.write_text(json.dumps({"closure_detector": {"d": 16, "dilations": [1, 2], "dropout": 0.1}}))
    return p


@pytest.fixture(scope="module")
def base(corpus: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base")
    assert main(["train", "--data", str(corpus), "--out", str(out), "--config", "tiny", "--device", "cpu",
                 "--steps", "2", "--threads", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def grown(corpus: Path, base: Path, part: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grown")
    assert main(["train", "--data", str(corpus), "--finetune", str(base), "--grow", str(part), "--out", str(out),
                 "--stage", "closure_detector", "--steps", "40", "--device", "cpu", "--threads", "1",
                 "--set", "sampling.enforce_closures=true"]) == 0
    return out


def test_training_fits_and_stores_an_operating_threshold(grown: Path) -> None:
    cfg = json.loads((grown / "config.json").read_text())
    assert "closure_detector" in cfg["training"]["stages_done"]
    fit = cfg["training"]["metrics"]["closure_detector_threshold"]
    th = cfg["sampling"]["closure_threshold"]
    assert fit["chosen"]["threshold"] == th and 0.0 < th < 1.0
    assert fit["chosen"]["bilabials"] > 0 and len(fit["curve"]) > 5
    # the rule: the lowest threshold that keeps false closures on open vowels under the limit
    ok = [r for r in fit["curve"] if r["open_shut"] <= fit["false_open_max"]]
    assert not ok or ok[0]["threshold"] == th
    assert cfg["training"]["metrics"]["closure_detector"]["val_clips"] > 0


def _with_bias(src: Path, dst: Path, bias: float) -> Path:
    """The grown checkpoint with its detector forced to always (bias +) or never (bias -) fire."""
    model = load_checkpoint(src)
    with torch.no_grad():
        model.closure_detector.out.weight.zero_()
        model.closure_detector.out.bias.fill_(bias)
    return save_checkpoint(model, dst)


def test_audio_only_runs_shut_the_lips_where_the_detector_fires(grown: Path, tmp_path: Path) -> None:
    audio, _ = toy_clip(np.random.default_rng(7), 2.0)
    opts = GenerateOptions(steps=3, seed=4, head_motion=0.0)
    always = DiffusionEngine(_with_bias(grown, tmp_path / "always", 20.0), device="cpu").generate(audio, 16000, opts)
    never = DiffusionEngine(_with_bias(grown, tmp_path / "never", -20.0), device="cpu").generate(audio, 16000, opts)
    assert always.meta["closures_detected"] == 1 and never.meta["closures_detected"] == 0
    inner = slice(15, 45)  # one detection over the whole 2 s: shut over its middle 60 %, like a long /m/
    assert (lip_gap(always)[inner] < SHUT_CM).all()
    # nothing detected: exactly what the same model gives without a detector
    plain = load_checkpoint(tmp_path / "never")
    plain.closure_detector = None
    cfg = dict(plain.cfg)
    cfg.pop("closure_detector")
    plain.cfg = cfg
    without = DiffusionEngine(save_checkpoint(plain, tmp_path / "plain"), device="cpu").generate(audio, 16000, opts)
    assert "closures_detected" not in without.meta
    np.testing.assert_array_equal(never.weights, without.weights)


def test_a_transcript_takes_precedence_over_the_detector(grown: Path, tmp_path: Path) -> None:
    audio, _ = toy_clip(np.random.default_rng(7), 2.0)
    phones = [Phone("HH", 0.2, 0.3), Phone("AH", 0.3, 0.6), Phone("L", 0.6, 0.7), Phone("OW", 0.7, 1.1)]
    opts = GenerateOptions(steps=3, seed=4, phones=phones)
    always = DiffusionEngine(_with_bias(grown, tmp_path / "always", 20.0), device="cpu").generate(audio, 16000, opts)
    never = DiffusionEngine(_with_bias(grown, tmp_path / "never", -20.0), device="cpu").generate(audio, 16000, opts)
    assert always.meta["phones"] == "aligned" and "closures_detected" not in always.meta
    np.testing.assert_array_equal(always.weights, never.weights)  # with phones the detector plays no part


def test_stage_needs_the_part_and_a_changed_detector_is_refused(corpus: Path, base: Path, grown: Path,
                                                                  tmp_path: Path, capsys) -> None:
    assert main(["train", "--data", str(corpus), "--finetune", str(base), "--out", str(tmp_path / "x"),
                 "--stage", "closure_detector", "--steps", "1", "--device", "cpu"]) != 0
    assert "parts/closure_detector.json" in capsys.readouterr().err
    # the shipped part reads the speech encoder's columns, which the tiny model does not have
    assert main(["train", "--data", str(corpus), "--finetune", str(base), "--grow", str(SHIPPED_PART),
                 "--out", str(tmp_path / "y"), "--stage", "closure_detector", "--steps", "1", "--device", "cpu"]) != 0
    assert "needs a model with a speech encoder" in capsys.readouterr().err
    cfg = json.loads((grown / "config.json").read_text())
    cfg["closure_detector"]["d"] = 8  # the weights were trained for 16 channels
    (grown / "config.json").write_text(json.dumps(cfg))
    try:
        with pytest.raises(CheckpointError, match="closure_detector"):
            load_checkpoint(grown)
    finally:
        cfg["closure_detector"]["d"] = 16
        (grown / "config.json").write_text(json.dumps(cfg))


def test_growing_is_reproducible_and_a_detector_run_keeps_the_motion_normalisation(corpus: Path, base: Path,
                                                                                   part: Path, grown: Path,
                                                                                   tmp_path: Path) -> None:
    fitted = json.loads((grown / "config.json").read_text())["training"]["metrics"]["closure_detector_threshold"]
    again = tmp_path / "again"
    # refit_motion_stats asks to renormalise when the denoiser is fine-tuned; this run trains only the
    # detector, so the denoiser must keep reading motion normalised as it was trained
    assert main(["train", "--data", str(corpus), "--finetune", str(base), "--grow", str(part),
                 "--out", str(again), "--stage", "closure_detector", "--steps", "40", "--device", "cpu",
                 "--threads", "1", "--set", "sampling.enforce_closures=true",
                 "--set", "train.refit_motion_stats=true"]) == 0
    a, b = load_checkpoint(grown), load_checkpoint(again)
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name  # same seed, same data: the same detector, the same stats
    assert json.loads((again / "config.json").read_text())["training"]["metrics"]["closure_detector_threshold"] \
        == fitted


def test_checkpoint_variant_script_moves_the_operating_point_or_drops_the_detector(tmp_path: Path) -> None:
    """scripts/checkpoint_variant.py: a lower threshold makes the bundled model's detector fire more often
    on the same clip; without the detector, audio-only runs report no detected closures, and the source
    folder is untouched."""
    import subprocess
    import sys

    from motion_server.audio.io import load_audio

    src = REPO / "motion_server" / "model" / "default"
    before = {f: (src / f).read_bytes() for f in ("config.json", "model.safetensors")}
    script = [sys.executable, str(REPO / "scripts" / "checkpoint_variant.py")]
    low, bare = tmp_path / "low", tmp_path / "bare"
    for args in ([str(low), "--set", "sampling.closure_threshold=0.1"], [str(bare), "--without", "closure_detector"]):
        r = subprocess.run([*script, *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([*script, str(low)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "exists" in r.stderr  # never overwrites
    assert {f: (src / f).read_bytes() for f in before} == before  # the source is only read
    r = subprocess.run([*script, str(tmp_path / "typo"), "--set", "sampling.closure_treshold=0.2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "no sampling.closure_treshold" in r.stderr and not (tmp_path / "typo").exists()
    assert json.loads((low / "config.json").read_text())["sampling"]["closure_threshold"] == 0.1
    audio = load_audio(REPO / "examples" / "jfk.flac", sr=16000)
    detected = {}
    for name, folder in (("default", src), ("low", low), ("bare", bare)):
        motion = DiffusionEngine(str(folder)).generate(audio, 16000, GenerateOptions(seed=0))
        detected[name] = motion.meta.get("closures_detected")
    assert detected["bare"] is None and detected["default"] is not None
    assert detected["low"] > detected["default"]


def test_checkpoint_variant_averages_a_fine_tune_with_its_base(tmp_path: Path) -> None:
    """`--average-with BASE --weight w` gives every tensor (1 - w) * MODEL + w * BASE, records which weights
    it averaged with (their sha256), and refuses a checkpoint of another shape, writing nothing."""
    import hashlib
    import subprocess
    import sys

    src = REPO / "motion_server" / "model" / "default"
    tuned = load_checkpoint(src)
    with torch.no_grad():  # stands in for a fine-tune: the same model with one layer moved
        tuned.denoiser.out.weight.add_(0.1)
    save_checkpoint(tuned, tmp_path / "tuned")
    script = [sys.executable, str(REPO / "scripts" / "checkpoint_variant.py")]
    r = subprocess.run([*script, str(tmp_path / "mid"), "--model", str(tmp_path / "tuned"), "--average-with", str(src),
                        "--weight", "0.25"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    base, mid = load_checkpoint(src), load_checkpoint(tmp_path / "mid")
    want = 0.75 * tuned.denoiser.out.weight + 0.25 * base.denoiser.out.weight
    assert torch.allclose(mid.denoiser.out.weight, want, atol=1e-6)
    assert torch.equal(mid.style_encoder.out.weight, base.style_encoder.out.weight)  # equal tensors stay equal
    change = json.loads((tmp_path / "mid" / "config.json").read_text())["training"]["changed_after_training"][-1]
    assert change["weight"] == 0.25
    assert change["sha256"] == hashlib.sha256((src / "model.safetensors").read_bytes()).hexdigest()

    r = subprocess.run([*script, str(tmp_path / "bare2"), "--without", "closure_detector"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run([*script, str(tmp_path / "odd"), "--average-with", str(tmp_path / "bare2")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "do not match" in r.stderr and "closure_detector" in r.stderr
    assert not (tmp_path / "odd").exists()
    r = subprocess.run([*script, str(tmp_path / "odd"), "--weight", "0.3"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "--average-with" in r.stderr and not (tmp_path / "odd").exists()
