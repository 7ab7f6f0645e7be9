"""Model parts: shapes, guidance batching, checkpoints, windowed long-audio sampling, SSL slot, controls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from motion_server.model import MOTION_DIM
from motion_server.model.batching import sample_timeline
from motion_server.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from motion_server.model.config import ConfigError, load_config, override
from motion_server.model.features import LogMelFeatures, SSLFeatures, SSLSpeechEncoder
from motion_server.model.guidance import branches, combine
from motion_server.model.long import WindowedTimeline, seam_score, window_starts
from motion_server.model.network import TalkRigModel, feature_dim
from motion_server.model.postprocess import apply_controls, blink_events, set_blink_rate
from motion_server.model.samplers import make_sampler
from motion_server.model.schedule import make_schedule
from motion_server.model.style_encoder import pad_clips


@pytest.fixture(scope="module")
def tiny_cfg():
    cfg = load_config("tiny")
    cfg["emotions"] = ["neutral", "happy"]
    cfg["presets"] = ["neutral", "happy"]
    return cfg


@pytest.fixture(scope="module")
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return TalkRigModel(tiny_cfg).eval()


def test_features_align_to_motion_frames():
    f = LogMelFeatures(load_config("tiny")["features"], 30.0)
    audio = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    rows = f(audio)
    assert rows.shape == (60, f.dim) and f.dim == 2 * 32
    assert np.isfinite(rows).all()
    # gain invariance: per-clip mean subtraction removes a level change
    assert np.allclose(f(audio * 4.0), rows, atol=1e-3)
    assert f(audio, n_frames=75).shape == (75, f.dim)


def test_part_shapes(tiny_model, tiny_cfg):
    m = tiny_model
    B, T = 3, 40
    feats = torch.randn(B, T, feature_dim(tiny_cfg))
    audio = m.encode_audio(feats)
    assert audio.shape == (B, T, tiny_cfg["model"]["d_model"])
    clips, pad = pad_clips([torch.randn(50, MOTION_DIM), torch.randn(20, MOTION_DIM), torch.randn(30, MOTION_DIM)], 120)
    s = m.encode_style(clips, pad)
    assert s.shape == (B, tiny_cfg["model"]["style_dim"])
    # padding must not change a clip's code
    alone = m.encode_style(clips[1:2, :20])
    assert torch.allclose(alone[0], s[1], atol=1e-5)
    x0 = m.denoise(torch.randn(B, T, MOTION_DIM), audio, torch.tensor([0, 500, 999]), s)
    assert x0.shape == (B, T, MOTION_DIM)
    le = m.lip_expert
    logit = le.logits(feats[:, :le.frames], torch.randn(B, le.frames, MOTION_DIM), le.style(clips, pad))
    assert logit.shape == (B,)
    sp = m.style_predictor
    code = sp.sample(sp.pool_audio(audio), torch.randn(B, 64), m.schedule, 4, torch.Generator().manual_seed(0))
    assert code.shape == (B, tiny_cfg["model"]["style_dim"])
    assert sp.emotion_logits(code).shape == (B, 2)


def test_guidance_branches_and_combination():
    style, anchor = torch.ones(1, 4), torch.zeros(1, 4)
    both = branches(style, anchor, 2.5)  # the engine stacks these rows into the same forward
    assert [float(b.sum()) for b in both] == [4.0, 0.0]
    out = combine([torch.ones(2, 5, 3), torch.zeros(2, 5, 3)], 2.5)
    assert torch.allclose(out, torch.full_like(out, 2.5))  # 0 + 2.5 * (1 - 0)
    # no anchor branch where it changes nothing: scale 1, or the style is the anchor; scale 0: anchor only
    assert len(branches(style, anchor, 1.0)) == 1 and len(branches(anchor, anchor, 2.5)) == 1
    assert [torch.equal(b, anchor) for b in branches(style, anchor, 0.0)] == [True]


def test_checkpoint_round_trip(tmp_path, tiny_model):
    save_checkpoint(tiny_model, tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["channel_order"][:2] == ["eyeBlinkLeft", "eyeLookDownLeft"] and len(cfg["channel_order"]) == 58
    back = load_checkpoint(tmp_path / "ck")
    for k, v in tiny_model.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k
    assert not list((tmp_path / "ck").glob("*.pt*"))  # safetensors + json only


def _mutate(path, fn):
    cfg = json.loads(path.read_text())
    fn(cfg)
    path.write_text(json.dumps(cfg))


def test_checkpoint_refuses_mismatched_config(tmp_path, tiny_model):
    d = tmp_path / "ck"
    save_checkpoint(tiny_model, d)
    good = (d / "config.json").read_text()
    _mutate(d / "config.json", lambda c: c["features"].update(hop=200))
    with pytest.raises(CheckpointError, match="features"):
        load_checkpoint(d)
    (d / "config.json").write_text(good)
    _mutate(d / "config.json", lambda c: c["channel_order"].reverse())
    with pytest.raises(CheckpointError, match="channel order"):
        load_checkpoint(d)
    (d / "config.json").write_text(good)
    # weights from another architecture under a matching-looking config
    other_cfg = override(tiny_model.cfg, model={"d_model": 48})
    other = TalkRigModel(other_cfg)
    save_checkpoint(other, tmp_path / "other")
    (tmp_path / "other" / "config.json").write_text(good)
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(tmp_path / "other")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nowhere")


def test_config_validation():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_config")
    with pytest.raises(ConfigError, match="divisible"):
        override(load_config("tiny"), model={"n_heads": 5})


def test_window_cover_and_weights():
    for T in (10, 40, 41, 75, 200, 1234):
        tl = WindowedTimeline(T, 40, 10)
        assert tl.starts[0] == 0 and tl.starts[-1] + tl.length == T
        total = torch.zeros(T)
        for k, s in enumerate(tl.starts):
            total[s: s + tl.length] += tl.weights[k]
        assert torch.allclose(total, torch.ones(T), atol=1e-5)
    starts = window_starts(1000, 120, 30)
    assert all(b - a <= 90 for a, b in zip(starts, starts[1:], strict=False))


def test_long_audio_joins_without_seams():
    """Windows that disagree (each adds its own offset) are joined by in-painting with no visible
    seam, while cutting the same windows hard leaves jumps."""
    T, W, OV = 300, 60, 16
    t_axis = torch.arange(T, dtype=torch.float32)
    audio = torch.stack([torch.sin(t_axis / 9.0), t_axis / T], -1)[None]  # "audio": content + time stamp

    def window_fn(xw, aw, t):
        offset = (aw[:, :1, 1:2] * 7.0).round() * 0.4  # a per-window disagreement
        return aw[..., :1].expand(-1, -1, 3) + offset + 0.05 * xw

    sampler = make_sampler("ddim", make_schedule({}), 6)
    x_T = torch.randn(1, T, 3, generator=torch.Generator().manual_seed(0))
    out = sample_timeline(window_fn, audio, sampler, x_T, W, OV, max_batch=3)[0]
    tl = WindowedTimeline(T, W, OV)
    joined = seam_score(out, tl.starts, tl.length)
    hard = torch.cat([window_fn(x_T[:, s: s + W], audio[:, s: s + W], 0)[0][: (tl.starts[k + 1] - s) if k + 1 < len(tl.starts) else W]
                      for k, s in enumerate(tl.starts)])
    assert hard.shape[0] == T
    assert joined < 2.5, joined
    assert seam_score(hard, tl.starts, tl.length) > 5


def test_ssl_encoder_slot_loads_local_weights(tmp_path):
    from safetensors.torch import save_file

    arch = {"conv_channels": [16, 16], "conv_kernels": [10, 4], "conv_strides": [5, 4], "d_model": 24,
            "n_layers": 1, "n_heads": 2}
    enc = SSLSpeechEncoder(**arch)
    path = tmp_path / "ssl.safetensors"
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path), metadata={"config": json.dumps(arch)})
    cfg = {"kind": "ssl", "path": str(path), "sr": 16000, "sub": 2, "n_mels": 16, "n_fft": 512, "win": 400,
           "hop": 160, "fmin": 40.0, "fmax": 7600.0, "out_dim": 24}
    f = SSLFeatures(cfg, 30.0)
    rows = f(np.random.default_rng(0).standard_normal(16000).astype(np.float32))
    assert rows.shape == (30, 48) and np.isfinite(rows).all()
    assert feature_dim({"features": cfg}) == 48
    # wrong architecture in the metadata -> a clear refusal
    save_file({k: v.contiguous() for k, v in enc.state_dict().items()}, str(path),
              metadata={"config": json.dumps({**arch, "d_model": 32})})
    with pytest.raises(ValueError, match="does not match"):
        SSLSpeechEncoder.from_safetensors(path)
    with pytest.raises(ValueError, match="not found"):
        SSLSpeechEncoder.from_safetensors(tmp_path / "missing.safetensors")


def test_blink_rate_control_is_exact():
    fps, T = 30.0, 1800  # one minute
    w = np.zeros((T, 52), np.float32)
    for target in (0, 12, 25):
        out = set_blink_rate(w, fps, target, seed=1)
        assert len(blink_events(out)) == target
    many = set_blink_rate(w, fps, 40, seed=2)
    fewer = set_blink_rate(many, fps, 10, seed=3)
    assert len(blink_events(fewer)) == 10
    assert fewer.min() >= 0 and fewer.max() <= 1


def test_intensity_and_head_controls():
    rng = np.random.default_rng(0)
    w = rng.uniform(0, 0.6, (50, 52)).astype(np.float32)
    h = rng.normal(0, 0.05, (50, 6)).astype(np.float32)
    w0, h0 = apply_controls(w, h, 30.0, intensity=0.0, head_motion=0.0)
    assert np.all(h0 == 0) and w0[:, 17].max() == 0  # jawOpen gone, head still
    assert np.array_equal(w0[:, 0], w[:, 0])  # blinks are not an "intensity"
    w2, _ = apply_controls(w, h, 30.0, intensity=2.0)
    assert w2.max() <= 1.0 and w2[:, 17].mean() > w[:, 17].mean()
    with pytest.raises(ValueError, match=">= 0"):
        apply_controls(w, h, 30.0, intensity=-1)


def test_smoothing_calms_slow_groups_and_leaves_the_lips_sharp():
    from motion_server.evaluation.metrics import jitter
    from motion_server.model.smoothing import smooth_groups
    from rig_mapping import FaceMotion
    from rig_mapping.arkit import ARKIT_INDEX

    rng = np.random.default_rng(0)
    w = np.clip(0.3 + 0.05 * rng.standard_normal((120, 52)), 0, 1).astype(np.float32)
    head = (0.02 * rng.standard_normal((120, 6))).astype(np.float32)
    sw, sh = smooth_groups(w, head, 30.0, {"head": 0.14, "brows": 0.06})
    before, after = jitter(FaceMotion.from_arrays(w, head, 30.0)), jitter(FaceMotion.from_arrays(sw, sh, 30.0))
    assert after["head_deg"] < 0.3 * before["head_deg"] and after["brows"] < 0.5 * before["brows"]
    jaw = ARKIT_INDEX["jawOpen"]
    assert np.array_equal(sw[:, jaw], w[:, jaw]) and after["mouth_jaw"] == before["mouth_jaw"]
    with pytest.raises(ValueError, match="unknown group 'lips'"):
        smooth_groups(w, head, 30.0, {"lips": 0.1})


def test_style_prior_guidance_and_averaging(tiny_cfg, tiny_model) -> None:
    sp, sched = tiny_model.style_predictor, tiny_model.schedule
    B = 2
    toks = sp.pool_audio(tiny_model.encode_audio(torch.randn(B, 30, feature_dim(tiny_cfg))))
    stats = torch.randn(B, 64)
    code = torch.randn(B, tiny_cfg["model"]["style_dim"])
    t = torch.tensor([10, 10])
    # the unconditional branch (audio dropped) cannot depend on the audio
    drop = torch.zeros(B, dtype=torch.bool)
    other = sp(code, t, torch.randn_like(toks), torch.randn_like(stats), drop)
    assert torch.allclose(sp(code, t, toks, stats, drop), other, atol=1e-6)
    assert not torch.allclose(sp(code, t, toks, stats), sp(code, t, torch.randn_like(toks), stats))

    # samples=n is the mean of n draws from the same noise, in one batch
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    mean4 = sp.sample(toks, stats, sched, 4, gen(), samples=4)
    each = sp.sample(toks.repeat_interleave(4, 0), stats.repeat_interleave(4, 0), sched, 4, gen())
    assert torch.allclose(mean4, each.view(B, 4, -1).mean(1), atol=1e-5)

    # guidance evaluates conditional and unconditional rows together and moves the code
    rows = []
    hook = sp.encoder.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    guided_code = sp.sample(toks, stats, sched, 4, gen(), guidance=3.0)
    hook.remove()
    assert rows == [2 * B] * 4
    assert not torch.allclose(guided_code, sp.sample(toks, stats, sched, 4, gen()))


def test_variance_gain_scales_slow_groups_about_their_mean_and_never_the_lips():
    from motion_server.model.smoothing import scale_groups
    from rig_mapping.arkit import ARKIT_INDEX, GROUP_INDICES

    rng = np.random.default_rng(0)
    w = rng.uniform(0.2, 0.4, (120, 52)).astype(np.float32)
    h = rng.normal(0, 0.02, (120, 6)).astype(np.float32)
    w2, h2 = scale_groups(w, h, {"head": 2.0, "brows": 1.5})
    np.testing.assert_allclose(h2.std(0), 2 * h.std(0), rtol=1e-4)
    np.testing.assert_allclose(h2.mean(0), h.mean(0), atol=1e-6)
    brows = list(GROUP_INDICES["brows"])
    np.testing.assert_allclose(w2[:, brows].std(0), 1.5 * w[:, brows].std(0), rtol=1e-4)
    jaw = ARKIT_INDEX["jawOpen"]
    assert np.array_equal(w2[:, jaw], w[:, jaw])
    with pytest.raises(ValueError, match="unknown group"):
        scale_groups(w, h, {"ears": 2.0})


def test_head_soft_limit_keeps_small_angles_and_bounds_large_ones():
    from motion_server.performer.calibration import cal, soft_limit_head

    lim = cal("head.limit_deg")
    deg = soft_limit_head(np.array([1.0, lim, 40.0]))
    assert deg[0] == pytest.approx(1.0, abs=0.01) and deg[1] < lim and deg[2] < lim and deg[2] > deg[1]
