"""Noise schedules and few-step samplers."""

from __future__ import annotations

import pytest
import torch

from motion_server.model.samplers import SAMPLERS, make_sampler
from motion_server.model.schedule import SCHEDULES, make_schedule


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_is_monotone_and_bounded(name):
    s = make_schedule({"schedule": name, "train_steps": 1000})
    ab = s.alphas_cumprod
    assert ab.shape == (1000,)
    assert float(ab[0]) > 0.99 and float(ab[-1]) < 0.01  # starts clean, ends (almost) pure noise
    assert bool((ab[1:] <= ab[:-1]).all())
    x0 = torch.ones(3, 4)
    xt = s.add_noise(x0, torch.zeros_like(x0), torch.tensor([0, 500, 999]))
    assert torch.allclose(xt[:, 0], s.alpha(torch.tensor([0, 500, 999])))


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="choose one of"):
        make_schedule({"schedule": "quadratic"})
    with pytest.raises(ValueError, match="choose one of"):
        make_sampler("euler", make_schedule({}), 8)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 4, 10])
def test_sampler_recovers_a_perfect_model(name, steps):
    """A model that always predicts the same clean signal must give exactly that signal."""
    sched = make_schedule({"schedule": "cosine"})
    target = torch.linspace(-1, 1, 24).view(1, 8, 3)
    calls = []
    sampler = make_sampler(name, sched, steps)
    assert sampler.timesteps[0] == 999 and len(sampler.timesteps) == steps
    assert sampler.timesteps == sorted(sampler.timesteps, reverse=True)

    def model_fn(x, t):
        calls.append(t)
        return target

    out = sampler.sample(model_fn, torch.randn(1, 8, 3))
    assert len(calls) == steps
    assert torch.allclose(out, target)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_sampler_is_deterministic_given_the_noise(name):
    sched = make_schedule({"schedule": "linear"})

    def model_fn(x, t):  # depends on the input, like a real denoiser
        return torch.tanh(x * 0.5 + t / 1000.0)

    outs = []
    for _ in range(2):
        g = torch.Generator().manual_seed(3)
        outs.append(make_sampler(name, sched, 8).sample(model_fn, torch.randn(2, 5, 4, generator=g)))
    assert torch.equal(outs[0], outs[1])
    g = torch.Generator().manual_seed(4)
    other = make_sampler(name, sched, 8).sample(model_fn, torch.randn(2, 5, 4, generator=g))
    assert not torch.allclose(outs[0], other)


def test_dpm_uses_history_unlike_ddim():
    """The second-order solver extrapolates from the last two predictions, so with a model whose
    prediction moves between steps the two samplers must differ."""
    sched = make_schedule({"schedule": "cosine"})

    def model_fn(x, t):
        return x * 0.3 + torch.full_like(x, 1.0 - t / 1000.0)

    x_T = torch.randn(1, 6, 2, generator=torch.Generator().manual_seed(0))
    a = make_sampler("ddim", sched, 6).sample(model_fn, x_T)
    b = make_sampler("dpm", sched, 6).sample(model_fn, x_T)
    assert not torch.allclose(a, b)
    assert torch.isfinite(b).all()


def test_ancestral_sampler_draws_from_the_data_and_is_reproducible_per_seed():
    """With the exact posterior mean of a +-1 two-point distribution as the model, the ancestral sampler
    lands on the data's spread; the same seed gives the same result, another seed another one."""
    sched = make_schedule({"schedule": "cosine"})

    def model_fn(x, t):
        a = float(sched.alphas_cumprod[t])
        return torch.tanh(x * a**0.5 / (1 - a))

    x_T = torch.randn(256, 1, 1, generator=torch.Generator().manual_seed(0))
    out = make_sampler("ancestral", sched, 8, seed=1).sample(model_fn, x_T)
    assert out.std().item() > 0.9 and out.abs().mean().item() > 0.9  # near +-1, not their average 0
    a = make_sampler("ancestral", sched, 8, seed=5).sample(model_fn, x_T)
    b = make_sampler("ancestral", sched, 8, seed=5).sample(model_fn, x_T)
    c = make_sampler("ancestral", sched, 8, seed=6).sample(model_fn, x_T)
    assert torch.equal(a, b) and not torch.allclose(a, c)
