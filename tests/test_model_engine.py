"""DiffusionEngine: every control, determinism, batching, cancel; and the bundled default checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from motion_server.engine.base import Cancelled, CancelToken, Engine, GenerateOptions
from motion_server.model import DEFAULT_CHECKPOINT
from motion_server.model.checkpoint import save_checkpoint
from motion_server.model.config import load_config
from motion_server.model.engine import DiffusionEngine
from motion_server.model.network import TalkRigModel
from motion_server.model.postprocess import blink_events
from motion_server.model.toy import toy_clip
from rig_mapping.formats import save_motion


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    cfg = load_config("tiny")
    cfg["emotions"] = cfg["presets"] = ["happy", "neutral"]
    torch.manual_seed(0)
    m = TalkRigModel(cfg)
    with torch.no_grad():
        m.presets.copy_(torch.randn_like(m.presets))
    d = save_checkpoint(m, tmp_path_factory.mktemp("eng"))
    return DiffusionEngine(d, device="cpu")


@pytest.fixture(scope="module")
def clip():
    audio, motion = toy_clip(np.random.default_rng(1), 3.0)
    return audio, motion


def test_protocol_and_info(engine):
    assert isinstance(engine, Engine)
    info = engine.info()
    assert info["style_presets"] == ["happy", "neutral"]
    assert set(info["samplers"]) == {"ddim", "dpm", "ancestral"}


def test_same_seed_same_output(engine, clip):
    audio, _ = clip
    a = engine.generate(audio, 16000, GenerateOptions(seed=3, steps=4))
    b = engine.generate(audio, 16000, GenerateOptions(seed=3, steps=4))
    c = engine.generate(audio, 16000, GenerateOptions(seed=4, steps=4))
    assert np.array_equal(a.weights, b.weights) and np.array_equal(a.head, b.head)
    assert not np.allclose(a.weights, c.weights)
    assert a.n_frames == 90 and a.meta["seed"] == 3


def test_guidance_runs_one_batched_forward_per_step(engine, clip):
    audio, _ = clip
    for sampler in ("ddim", "dpm"):
        engine.forward_calls = 0
        engine.generate(audio, 16000, GenerateOptions(steps=5, sampler=sampler, guidance=2.0))
        # 3 s = 90 frames -> 3 windows of 40 (tiny config), max_batch 8: one forward per step
        assert engine.forward_calls == 5


def test_long_audio_is_windowed_and_batched(engine):
    audio, _ = toy_clip(np.random.default_rng(2), 20.0)
    engine.forward_calls = 0
    mo = engine.generate(audio, 16000, GenerateOptions(steps=2, guidance=1.5))
    assert mo.n_frames == 600
    starts = mo.meta["window_boundaries"]
    assert len(starts) >= 19  # 600 frames / (40 - 10) stride
    assert engine.forward_calls == 2 * int(np.ceil(len(starts) / 8))  # chunks of max_batch windows per step


def test_style_sources_all_run(engine, clip, tmp_path):
    audio, motion = clip
    outs = {}
    ref_file = save_motion(motion, tmp_path / "ref.npz")
    for name, opts in {
        "preset": GenerateOptions(style="happy", steps=3),
        "predicted": GenerateOptions(style="predicted", steps=3),
        "reference": GenerateOptions(style_reference=motion, steps=3),
        "file": GenerateOptions(style=str(ref_file), steps=3),
        "mix": GenerateOptions(style="happy", style_mix=("neutral", 0.5), steps=3),
    }.items():
        m = engine.generate(audio, 16000, opts)
        assert np.isfinite(m.weights).all() and m.weights.min() >= 0 and m.weights.max() <= 1
        outs[name] = m
    assert not np.allclose(outs["preset"].weights, outs["mix"].weights)
    assert np.array_equal(outs["reference"].weights, outs["file"].weights)
    with pytest.raises(ValueError, match="unknown style"):
        engine.generate(audio, 16000, GenerateOptions(style="grumpy"))
    with pytest.raises(FileNotFoundError):
        engine.generate(audio, 16000, GenerateOptions(style=str(tmp_path / "missing.csv")))


def test_controls(engine, clip):
    audio, _ = clip
    base = engine.generate(audio, 16000, GenerateOptions(steps=3))
    still = engine.generate(audio, 16000, GenerateOptions(steps=3, head_motion=0.0, intensity=0.0))
    assert np.all(still.head == 0) and still.weights[:, 17].max() == 0
    blinky = engine.generate(audio, 16000, GenerateOptions(steps=3, blink_rate=40))
    calm = engine.generate(audio, 16000, GenerateOptions(steps=3, blink_rate=0))
    assert len(blink_events(calm.weights)) == 0
    assert len(blink_events(blinky.weights)) >= 1
    assert base.n_frames == blinky.n_frames
    at60 = engine.generate(audio, 16000, GenerateOptions(steps=3, fps=60))
    assert at60.fps == 60 and abs(at60.n_frames - 180) <= 1
    at8k = engine.generate(audio[::2].copy(), 8000, GenerateOptions(steps=3))
    assert at8k.n_frames == 90


def test_bad_options_are_refused(engine, clip):
    audio, _ = clip
    for opts, msg in [(GenerateOptions(steps=0), "steps"), (GenerateOptions(sampler="euler"), "sampler"),
                      (GenerateOptions(guidance=-1), "guidance"), (GenerateOptions(style_mix=("happy", 2.0)), "style_mix")]:
        with pytest.raises(ValueError, match=msg):
            engine.generate(audio, 16000, opts)
    with pytest.raises(ValueError, match="mono"):
        engine.generate(np.zeros((2, 100), np.float32), 16000, GenerateOptions())


def test_progress_and_cancel(engine, clip):
    audio, _ = clip
    seen = []
    engine.generate(audio, 16000, GenerateOptions(steps=4), progress=lambda f, s: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    tok = CancelToken()

    def cancel_midway(f, stage):
        if stage == "sampling":
            tok.cancel()

    with pytest.raises(Cancelled):
        engine.generate(audio, 16000, GenerateOptions(steps=4), progress=cancel_midway, cancel=tok)


def test_bundled_default_checkpoint_generates(jfk):
    """The shipped model loads by default and animates a real recording: finite, in range, moving mouth."""
    from motion_server.audio.io import load_audio

    assert (DEFAULT_CHECKPOINT / "model.safetensors").is_file(), "bundled default checkpoint missing"
    size = (DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size
    assert size < 30 * 2**20
    eng = DiffusionEngine(device="cpu")
    assert len(eng.info()["style_presets"]) >= 2
    audio = load_audio(jfk.path, sr=16000)[: 4 * 16000]
    for style in (None, "predicted"):
        m = eng.generate(audio, 16000, GenerateOptions(style=style, seed=0))
        assert np.isfinite(m.weights).all() and 0 <= m.weights.min() and m.weights.max() <= 1
        assert np.abs(m.head[:, :3]).max() < 0.6
        jaw = m.channel("jawOpen")
        assert jaw.max() - jaw.min() > 0.1, "the mouth does not move"


def test_guidance_zero_is_the_neutral_style(engine, clip):
    audio, _ = clip
    neutral = engine.generate(audio, 16000, GenerateOptions(seed=5, style="neutral"))
    zero = engine.generate(audio, 16000, GenerateOptions(seed=5, style="happy", guidance=0.0))
    happy = engine.generate(audio, 16000, GenerateOptions(seed=5, style="happy"))
    assert np.allclose(zero.weights, neutral.weights, atol=1e-5)
    assert not np.allclose(happy.weights, neutral.weights, atol=1e-3)
