"""The optional transcript phone track: frame indexing, training corruption, growing a checkpoint with
it, and the engine reading a transcript (forced alignment) only when the model was trained for it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motion_server.engine.base import GenerateOptions
from motion_server.model.checkpoint import CheckpointError, grow_checkpoint, load_checkpoint, save_checkpoint
from motion_server.model.config import load_config
from motion_server.model.engine import DiffusionEngine
from motion_server.model.network import TalkRigModel
from motion_server.model.phone_track import DEFAULT_SYMBOLS, jitter_and_drop, phone_track
from motion_server.phones import Phone

PARTS = "motion_server/model/configs/parts/phones.json"


def _phones():
    return [Phone("SIL", 0.0, 0.1), Phone("M", 0.1, 0.2), Phone("AA1", 0.2, 0.4), Phone("XX", 0.4, 0.5)]


def test_track_indexes_the_phone_under_each_frame():
    tr = phone_track(_phones(), 18, 30.0)
    idx = {s: i + 1 for i, s in enumerate(DEFAULT_SYMBOLS)}
    assert tr.shape == (18,) and tr.dtype == np.int64
    assert list(tr[:3]) == [idx["SIL"]] * 3  # frames 0, 1, 2 lie in [0, 0.1)
    assert list(tr[3:6]) == [idx["M"]] * 3
    assert list(tr[6:12]) == [idx["AA"]] * 6  # stress digit dropped
    assert list(tr[12:15]) == [0] * 3  # a symbol the model does not know is "unknown"
    assert list(tr[15:]) == [0] * 3  # no phone covers the tail


def test_a_phone_between_two_frame_times_still_claims_its_middle_frame():
    idx = {s: i + 1 for i, s in enumerate(DEFAULT_SYMBOLS)}
    # /b/ from 0.105 to 0.13 s lies between frames 3 (0.1 s) and 4 (0.133 s): it covers no frame time
    phones = [Phone("AH", 0.0, 0.105), Phone("B", 0.105, 0.13), Phone("AA", 0.13, 0.3)]
    tr = phone_track(phones, 9, 30.0)
    assert (tr == idx["B"]).sum() == 1 and tr[int(round(0.1175 * 30))] == idx["B"]


def test_training_corruption_drops_or_shifts_by_at_most_the_jitter():
    rng = np.random.default_rng(0)
    track = np.tile(np.arange(1, 31), (64, 1))
    assert not jitter_and_drop(track, rng, 1.0, 1).any()
    out = jitter_and_drop(track, rng, 0.0, 1)
    shifts = {int(np.median(o[5:-5] - t[5:-5])) for o, t in zip(out, track, strict=True)}
    assert shifts == {-1, 0, 1}
    mixed = jitter_and_drop(track, rng, 0.5, 0)
    blank = (mixed == 0).all(axis=1)
    assert 10 < blank.sum() < 54 and (mixed[~blank] == track[~blank]).all()


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory):
    cfg = load_config("tiny")
    cfg.pop("phones")
    cfg["emotions"] = cfg["presets"] = ["happy", "neutral"]
    torch.manual_seed(0)
    m = TalkRigModel(cfg)
    with torch.no_grad():
        m.presets.copy_(torch.randn_like(m.presets))
    return save_checkpoint(m, tmp_path_factory.mktemp("plain"))


def test_grown_checkpoint_starts_identical_and_reads_phones(plain_checkpoint, tmp_path):
    parts = json.loads(open(PARTS).read())
    grown = grow_checkpoint(plain_checkpoint, parts)
    assert grown.phone_embed is not None and not grown.phone_embed.weight.abs().sum()
    d = save_checkpoint(grown, tmp_path / "grown")
    assert load_checkpoint(d).phone_symbols == list(DEFAULT_SYMBOLS)
    audio = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    a = DiffusionEngine(plain_checkpoint, device="cpu").generate(audio, 16000, GenerateOptions(seed=1))
    b = DiffusionEngine(d, device="cpu").generate(audio, 16000, GenerateOptions(seed=1))
    assert np.array_equal(a.weights, b.weights)  # zero-initialised: nothing changes until trained
    with pytest.raises(CheckpointError, match="existing section"):
        grow_checkpoint(plain_checkpoint, {"model": {"d_model": 64}})


def test_engine_aligns_a_transcript_only_for_models_that_read_phones(plain_checkpoint, tmp_path, jfk):
    from motion_server.audio.io import load_audio

    audio = load_audio(jfk.path, sr=16000)[: 16000 * 4]
    text = "And so my fellow Americans"
    grown = grow_checkpoint(plain_checkpoint, json.loads(open(PARTS).read()))
    with torch.no_grad():
        grown.phone_embed.weight.normal_()  # a "trained" track: it must now change the lips
    d = save_checkpoint(grown, tmp_path / "reads")
    eng = DiffusionEngine(d, device="cpu")
    with_text = eng.generate(audio, 16000, GenerateOptions(seed=2, transcript=text))
    without = eng.generate(audio, 16000, GenerateOptions(seed=2))
    assert with_text.meta["phones"] == "aligned" and without.meta["phones"] == "none"
    assert not np.allclose(with_text.weights, without.weights)
    plain = DiffusionEngine(plain_checkpoint, device="cpu").generate(audio, 16000, GenerateOptions(transcript=text))
    assert plain.meta["phones"].startswith("ignored")


def test_closure_constraint_shuts_the_lips_at_bilabials_and_leaves_other_frames():
    from motion_server.evaluation.geometry import lip_gap
    from motion_server.evaluation.metrics import CLOSURE_THRESHOLD_CM
    from motion_server.model.constraints import closure_constraint

    phones = [Phone("AA", 0.0, 0.3), Phone("B", 0.3, 0.34), Phone("AA", 0.34, 0.8)]
    T = 24
    mean, std = torch.full((58,), 0.2), torch.full((58,), 0.3)
    c = closure_constraint(phones, T, 30.0, lambda x: (x - mean) / std, lambda x: x * std + mean)
    x0 = torch.randn(1, T, 58, generator=torch.Generator().manual_seed(0))
    out = c(x0)
    raw = (out * std + mean)[0, :, :52].clamp(0, 1).numpy()
    mid = int(round(0.32 * 30))
    assert lip_gap(raw)[mid] < CLOSURE_THRESHOLD_CM
    far = [f for f in range(T) if abs(f - mid) > 3]
    assert torch.equal(out[0, far], x0[0, far]) and torch.equal(out[..., 52:], x0[..., 52:])
    assert closure_constraint([Phone("AA", 0.0, 0.5)], T, 30.0, lambda x: x, lambda x: x) is None
