"""`talkrig train` end to end on a tiny corpus the test writes (toy clips: tone bursts drive the jaw)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from motion_server.cli import main
from motion_server.engine.base import GenerateOptions
from motion_server.model.checkpoint import load_checkpoint
from motion_server.model.engine import DiffusionEngine
from motion_server.model.toy import toy_clip, write_toy_folder


@pytest.fixture(scope="module")
def toy_dir(tmp_path_factory):
    d = write_toy_folder(tmp_path_factory.mktemp("toy"), n_clips=6, seconds=3.0)
    labels = {f"clip{i:03d}": {"emotion": ["neutral", "happy"][i % 2], "group": f"g{i % 2}"} for i in range(6)}
    (d / "labels.json").write_text(json.dumps(labels))
    return d


@pytest.fixture(scope="module")
def trained(tmp_path_factory, toy_dir):
    out = tmp_path_factory.mktemp("ck")
    rc = main(["train", "--data", str(toy_dir), "--out", str(out), "--config", "tiny", "--device", "cpu",
               "--steps", "4", "--threads", "1", "--set", "train.gap_loss_weight=0.5"])
    assert rc == 0
    return out


def test_train_writes_a_loadable_checkpoint(trained):
    cfg = json.loads((trained / "config.json").read_text())
    assert cfg["training"]["stages_done"] == ["lip_expert", "denoiser", "style_predictor"]
    assert cfg["presets"] == ["happy", "neutral"] and cfg["emotions"] == ["happy", "neutral"]
    assert cfg["training"]["data"]["train"]["clips"] + cfg["training"]["data"]["val"]["clips"] == 6
    m = cfg["training"]["metrics"]
    assert 0.0 <= m["lip_expert"]["val_accuracy"] <= 1.0
    assert "val_lip_gap_corr" in m["denoiser"] and "emotion_acc_predicted_code" in m["style_predictor"]
    assert not (trained / "train_state.json").exists()  # finished stages leave no resume state
    assert cfg["train"]["gap_loss_weight"] == 0.5  # --set overrides are recorded with the checkpoint
    model = load_checkpoint(trained)
    assert float(model.presets.abs().sum()) > 0
    eng = DiffusionEngine(trained, device="cpu")
    audio, _ = toy_clip(np.random.default_rng(5), 2.0)
    mo = eng.generate(audio, 16000, GenerateOptions(style="happy", steps=3, seed=1))
    assert mo.n_frames == 60 and np.isfinite(mo.weights).all()


def test_train_resumes_from_saved_state(tmp_path, toy_dir):
    from motion_server.model.train import run_training

    out = tmp_path / "run"
    assert main(["train", "--data", str(toy_dir), "--out", str(out), "--config", "tiny", "--stage", "lip_expert",
                 "--steps", "2", "--device", "cpu"]) == 0

    def interrupt(msg):  # Ctrl-C during step 3 (tiny.json saves every 2 steps)
        if msg.startswith("[denoiser] step 3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(out, "tiny", toy_dir, stage="denoiser", steps=6, device="cpu", resume=True, log=interrupt)
    state = json.loads((out / "train_state.json").read_text())
    assert state["stage"] == "denoiser" and state["step"] == 2
    seen = []
    run_training(out, "tiny", toy_dir, stage="denoiser", steps=6, device="cpu", resume=True, log=seen.append)
    assert "[denoiser] resuming at step 2" in seen
    assert not any(m.startswith("[denoiser] step 1/") for m in seen)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["training"]["metrics"]["denoiser"]["steps_run"] == 6
    assert "lip_expert" in cfg["training"]["stages_done"]
    assert (out / "cache_folder.npz").is_file()  # features were cached, not recomputed


def test_finetune_on_captures(tmp_path, trained):
    cap = write_toy_folder(tmp_path / "captures", n_clips=4, seconds=2.5, seed=9)
    out = tmp_path / "ft"
    assert main(["train", "--captures", str(cap), "--finetune", str(trained), "--out", str(out),
                 "--steps", "2", "--device", "cpu"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["presets"] == ["happy", "neutral"]  # the base model's presets are kept
    assert cfg["training"]["stages_done"] == ["denoiser"]
    # the checkpoint says which data each stage learnt from: the captures for the fine-tuned denoiser,
    # the base run's corpus for the untouched lip expert and style prior
    by_stage = cfg["training"]["data_by_stage"]
    assert by_stage["denoiser"]["train"]["clips"] + by_stage["denoiser"]["val"]["clips"] == 4
    assert by_stage["lip_expert"]["train"]["clips"] + by_stage["lip_expert"]["val"]["clips"] == 6
    assert by_stage["style_predictor"] == by_stage["lip_expert"]
    a = load_checkpoint(trained).denoiser.out.weight
    b = load_checkpoint(out).denoiser.out.weight
    assert not np.allclose(a.detach().numpy(), b.detach().numpy())


def test_lip_gap_loss_matches_the_evaluation_face():
    import torch

    from motion_server.evaluation.geometry import lip_gap
    from motion_server.model.train import _lip_gap_fn

    w = np.random.default_rng(0).uniform(0, 0.6, (7, 52)).astype(np.float32)
    g = _lip_gap_fn(torch.device("cpu"))(torch.from_numpy(w))
    assert np.allclose(g.numpy(), lip_gap(w), atol=1e-4)


def test_train_errors_are_clear(tmp_path, capsys, trained, toy_dir):
    # the architecture of a loaded checkpoint cannot be overridden
    rc = main(["train", "--captures", str(toy_dir), "--finetune", str(trained), "--out", str(tmp_path / "z"),
               "--set", "model.d_model=64"])
    assert rc == 2 and "fixed by its weights" in capsys.readouterr().err
    # an existing checkpoint is never overwritten silently
    assert main(["train", "--data", str(toy_dir), "--out", str(trained), "--config", "tiny"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "x")]) == 2
    assert "--data" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.wav").write_bytes(b"")
    rc = main(["train", "--data", str(tmp_path / "empty"), "--out", str(tmp_path / "y"), "--config", "tiny"])
    assert rc == 2
    assert "motion file" in capsys.readouterr().err


def test_older_checkpoints_only_vouch_for_the_stages_their_last_run_trained() -> None:
    from motion_server.model.train import _legacy_data_by_stage

    prev = {"data": {"sources": ["/c3"]}, "stages_done": ["denoiser"],
            "metrics": {"lip_expert": {}, "denoiser": {}, "style_predictor": {}}}
    by = _legacy_data_by_stage(prev)
    assert by["denoiser"] == {"sources": ["/c3"]}
    assert "unknown" in by["lip_expert"]["sources"][0] and "unknown" in by["style_predictor"]["sources"][0]


def test_bad_style_prior_settings_are_refused() -> None:
    from motion_server.model.config import ConfigError, load_config, override

    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match="style_samples"):
        override(cfg, sampling={"style_samples": 0})
    with pytest.raises(ConfigError, match="style_guidance"):
        override(cfg, sampling={"style_guidance": "lots"})


def test_finetune_grows_a_speech_encoder_reads_two_folders_and_refits_the_normalisation(tmp_path, trained):
    from test_speech_encoder import write_tiny_whisper

    from motion_server.model.speech_encoder import load_speech_encoder

    enc = write_tiny_whisper(tmp_path / "enc", seed=0)
    parts = tmp_path / "speech.json"
    parts.write_text(json.dumps({"speech_encoder": {"kind": "whisper", "weights": str(enc), "dim": 16}}))
    a = write_toy_folder(tmp_path / "a", n_clips=3, seconds=2.5, seed=3)
    b = write_toy_folder(tmp_path / "b", n_clips=3, seconds=2.5, seed=4)
    out = tmp_path / "grown"
    assert main(["train", "--data", str(a), str(b), "--finetune", str(trained), "--grow", str(parts),
                 "--out", str(out), "--steps", "2", "--device", "cpu",
                 "--set", "train.refit_motion_stats=true"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["speech_encoder"]["sha256"] == load_speech_encoder(str(enc))[1]  # bound to its encoder
    assert cfg["training"]["data"]["sources"] == [str(a), str(b)]
    grown = load_checkpoint(out)
    assert grown.audio_encoder.inp.weight.shape[1] == load_checkpoint(trained).audio_encoder.inp.weight.shape[1] + 16
    # the normalisation is now that of the fine-tune's own data, not the base run's
    assert not np.allclose(grown.motion_mean.numpy(), load_checkpoint(trained).motion_mean.numpy())
    audio, _ = toy_clip(np.random.default_rng(3), 2.5)
    mo = DiffusionEngine(out, device="cpu").generate(audio, 16000, GenerateOptions(steps=2, seed=1))
    assert mo.n_frames == 75 and np.isfinite(mo.weights).all()


def test_finetune_can_keep_the_style_space(tmp_path, trained, toy_dir):
    """A fine-tune told to freeze the style encoder leaves it (and so every style code and preset) as it
    was, while the denoiser learns; a name that is no module is refused before any training."""
    # other clips than the base model's: presets recomputed from them would differ
    other = write_toy_folder(tmp_path / "other", n_clips=4, seconds=2.5, seed=11)
    (other / "labels.json").write_text(json.dumps(
        {f"clip{i:03d}": {"emotion": "happy", "group": f"h{i}"} for i in range(4)}))
    out = tmp_path / "frozen"
    assert main(["train", "--data", str(other), "--finetune", str(trained), "--out", str(out), "--stage",
                 "denoiser", "--steps", "3", "--device", "cpu",
                 "--set", 'train.freeze=["style_encoder", "null_style"]']) == 0
    a, b = load_checkpoint(trained), load_checkpoint(out)
    for (name, p), (_, q) in zip(a.style_encoder.named_parameters(), b.style_encoder.named_parameters(), strict=True):
        assert np.array_equal(p.detach().numpy(), q.detach().numpy()), name
    assert np.array_equal(a.null_style.detach().numpy(), b.null_style.detach().numpy())
    assert np.array_equal(a.presets.numpy(), b.presets.numpy())  # "happy" still means what it meant
    assert not np.allclose(a.denoiser.out.weight.detach().numpy(), b.denoiser.out.weight.detach().numpy())

    # the style encoder trained, or the motion it reads renormalised: the codes moved, so the presets are
    # refit on the run's clips. A fine-tune of the frozen run does not inherit its freeze.
    for name, base, extra in (("moved", trained, []), ("again", out, []),
                              ("renormalised", trained, ["--set", 'train.freeze=["style_encoder"]',
                                                         "--set", "train.refit_motion_stats=true"])):
        assert main(["train", "--data", str(other), "--finetune", str(base), "--out", str(tmp_path / name),
                     "--stage", "denoiser", "--steps", "3", "--device", "cpu", *extra]) == 0
        assert not np.array_equal(a.presets.numpy(), load_checkpoint(tmp_path / name).presets.numpy()), name
    again = load_checkpoint(tmp_path / "again")
    assert not np.array_equal(a.style_encoder.out.weight.detach().numpy(), again.style_encoder.out.weight.detach().numpy())

    with pytest.raises(ValueError, match="style_encodr"):
        from motion_server.model.train import run_training

        run_training(tmp_path / "bad", data=toy_dir, finetune=trained, stage="denoiser", steps=1, device="cpu",
                     sets=['train.freeze=["style_encodr"]'])


def test_a_resumed_stage_freezes_what_it_froze(tmp_path, trained, toy_dir):
    """The saved optimizer state holds only the trained parameters: resuming with another train.freeze is
    refused with the fix named, and the same freeze resumes."""
    from motion_server.model.train import run_training

    out = tmp_path / "run"
    freeze = ['train.freeze=["style_encoder"]']

    def interrupt(msg):  # Ctrl-C during step 3 (tiny.json saves every 2 steps)
        if msg.startswith("[denoiser] step 3/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_training(out, data=toy_dir, finetune=trained, stage="denoiser", steps=6, device="cpu", log=interrupt,
                     sets=freeze)
    with pytest.raises(ValueError, match="resume with the same train.freeze"):
        run_training(out, data=toy_dir, finetune=trained, stage="denoiser", steps=6, device="cpu", resume=True,
                     sets=['train.freeze=["null_style"]'])
    seen = []
    run_training(out, data=toy_dir, finetune=trained, stage="denoiser", steps=6, device="cpu", resume=True,
                 log=seen.append)
    assert "[denoiser] resuming at step 2" in seen
