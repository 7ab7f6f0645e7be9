"""Speech-encoder forwards shared across jobs (``motion_server.model.forward_packer``): requests that wait
together go out as one batch, each caller gets exactly its own rows, and a failure reaches every caller
of that forward. The diffusion engine packs on a GPU by default; here it is switched on for the CPU."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from motion_server.model.forward_packer import ForwardPacker

DEADLINE_S = 60


def _until(cond, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)  # polling cadence, not synchronisation: the loop ends on the condition


class Gated:
    """A linear layer whose first call holds until released, so the next requests queue behind it."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(16, 8)
        self.entered, self.release = threading.Event(), threading.Event()
        self.batches: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(DEADLINE_S)
        self.batches.append(int(x.shape[0]))
        return self.layer(x)


def _submit(packer: ForwardPacker, fn, x: torch.Tensor, out: dict, key: str) -> threading.Thread:
    def go() -> None:
        try:
            out[key] = packer.run(fn, x)
        except BaseException as e:  # checked by the test
            out[key] = e

    t = threading.Thread(target=go)
    t.start()
    return t


def test_requests_waiting_together_share_one_forward_and_get_their_own_rows() -> None:
    packer, f = ForwardPacker(max_rows=8), Gated()
    xs = {k: torch.randn(n, 16) for k, n in (("a", 2), ("b", 3), ("c", 4), ("d", 5))}
    out: dict = {}
    threads = [_submit(packer, f, xs["a"], out, "a")]
    assert f.entered.wait(DEADLINE_S)
    threads += [_submit(packer, f, xs[k], out, k) for k in ("b", "c", "d")]
    _until(lambda: packer.waiting == 3, "the three requests never queued")
    f.release.set()
    for t in threads:
        t.join(DEADLINE_S)
    for k, x in xs.items():
        assert torch.equal(out[k], f.layer(x)), k
    # a alone; b and c together (7 rows); d would pass the 8-row bound, so it has its own forward
    assert f.batches == [2, 7, 5]
    assert packer.forwards == 3 and packer.largest == 2
    packer.close()


def test_only_the_same_function_and_row_shape_are_packed() -> None:
    packer, f = ForwardPacker(max_rows=64), Gated()
    other = torch.nn.Linear(16, 8)
    out: dict = {}
    threads = [_submit(packer, f, torch.randn(1, 16), out, "first")]
    assert f.entered.wait(DEADLINE_S)
    threads += [_submit(packer, f, torch.randn(2, 16), out, "same"),
                _submit(packer, other, torch.randn(2, 16), out, "other fn")]
    _until(lambda: packer.waiting == 2, "the requests never queued")
    f.release.set()
    for t in threads:
        t.join(DEADLINE_S)
    assert packer.forwards == 3 and packer.largest == 1
    assert all(isinstance(v, torch.Tensor) for v in out.values())
    packer.close()


def test_a_failed_forward_reaches_every_caller_in_it_and_the_packer_goes_on() -> None:
    packer = ForwardPacker(max_rows=8)

    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        packer.run(broken, torch.randn(2, 4))
    assert torch.equal(packer.run(lambda x: x * 2, torch.ones(2, 4)), torch.full((2, 4), 2.0))
    packer.close()
    # closed: later calls run on the caller's own thread
    caller = []
    packer.run(lambda x: caller.append(threading.current_thread()) or x, torch.ones(1, 4))
    assert caller == [threading.current_thread()]


def test_engine_jobs_prepared_side_by_side_share_encoder_forwards_and_keep_their_solo_results() -> None:
    from motion_server.bench.audio import speech_of_length
    from motion_server.engine import GenerateOptions
    from motion_server.model.engine import DiffusionEngine

    solo_engine = DiffusionEngine(device="cpu", pack_encoder=False)
    engine = DiffusionEngine(device="cpu", pack_encoder=True)
    src, _ = speech_of_length(80.0, 16000)
    clips = [src[k * 16000 * 7: k * 16000 * 7 + 16000 * 35] for k in range(4)]  # 35 s: 3 full windows each
    want = [solo_engine.generate(c, 16000, GenerateOptions(seed=k)) for k, c in enumerate(clips)]
    got: dict = {}
    go = threading.Barrier(len(clips))

    def job(k: int) -> None:
        go.wait(DEADLINE_S)
        got[k] = engine.generate(clips[k], 16000, GenerateOptions(seed=k))

    threads = [threading.Thread(target=job, args=(k,)) for k in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for k, w in enumerate(want):
        assert np.array_equal(got[k].weights, w.weights) and np.array_equal(got[k].head, w.head), k
    assert engine.encoder_packer.largest >= 2, "no two jobs' windows shared an encoder forward"
    engine.close()
    solo_engine.close()
