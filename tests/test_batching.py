"""The window batcher on its own: runs packed into shared forwards equal their solo runs, forwards are
filled round-robin (a short run finishes first), and a failing or cancelled run ends alone."""

from __future__ import annotations

import pytest
import torch

from motion_server.engine.base import Cancelled, CancelToken
from motion_server.model.batching import WindowBatcher, sample_timeline
from motion_server.model.long import TimelineSampling
from motion_server.model.samplers import make_sampler
from motion_server.model.schedule import make_schedule

W, OV = 40, 10


def window_fn(xw, aw, t):
    """Row-independent, input-dependent: like the denoiser outside training."""
    return torch.tanh(0.5 * xw + aw[..., :1] + t / 1000.0)


def forward(work):
    for w in work:
        if w.run.context == "bad":
            raise RuntimeError("this run's rows fail")
    return [window_fn(w.x, w.cond, w.t) for w in work]


def _inputs(T, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, T, 3, generator=g), torch.randn(1, T, 2, generator=g)


def _run(T, seed, sampler="dpm", context=None, check=None):
    x_T, cond = _inputs(T, seed)
    return TimelineSampling(make_sampler(sampler, make_schedule({}), 6), x_T, cond, W, OV, context=context,
                            check=check)


def _solo(T, seed, sampler="dpm"):
    x_T, cond = _inputs(T, seed)
    return sample_timeline(window_fn, cond, make_sampler(sampler, make_schedule({}), 6), x_T, W, OV, max_batch=2)


def test_packed_runs_equal_their_solo_runs_and_the_short_one_finishes_first():
    long, short, odd = _run(900, 1), _run(70, 2, "ddim"), _run(25, 3)  # odd: shorter than a window
    b = WindowBatcher(forward, max_batch=4)
    for r in (long, short, odd):
        b.add(r)
    order = []
    while len(b):
        for r, exc in b.step():
            assert exc is None
            order.append(r)
    assert order.index(short) < order.index(long) and order.index(odd) < order.index(long)
    assert b.largest == 4 and b.most_runs == 2  # the 25-frame windows are never stacked with 40-frame ones
    assert torch.equal(long.result(), _solo(900, 1))
    assert torch.equal(short.result(), _solo(70, 2, "ddim"))
    assert torch.equal(odd.result(), _solo(25, 3))


def test_a_failing_or_cancelled_run_ends_alone():
    token = CancelToken()
    good, bad, cancelled = _run(200, 4), _run(200, 5, context="bad"), _run(200, 6, check=token.check)
    b = WindowBatcher(forward, max_batch=8)
    for r in (good, bad, cancelled):
        b.add(r)
    ended = dict((id(r), e) for r, e in b.step())
    assert isinstance(ended.pop(id(bad)), RuntimeError) and not ended  # the shared forward was retried per run
    token.cancel()
    ended = dict((id(r), e) for r, e in b.step())
    assert isinstance(ended.pop(id(cancelled)), Cancelled) and not ended
    assert torch.equal(b.run_alone(good), _solo(200, 4))
    with pytest.raises(ValueError, match="max_batch"):
        WindowBatcher(forward, max_batch=0)
