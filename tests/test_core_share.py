"""How one process shares its CPU cores between forwards (``motion_server.model.device.CoreShare``): a lone
forward spreads its rows over every core, forwards running side by side get one core each, and the rows
come out exactly as one plain call gives them."""

from __future__ import annotations

import threading

import pytest
import torch

from motion_server.model.device import CoreShare


class Recorder:
    """A row-wise forward (a linear layer) that notes where and how it ran."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.layer = torch.nn.Linear(64, 32)
        self.calls: list[tuple[str, int, int, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with self.lock:
            self.calls.append((threading.current_thread().name, int(x.shape[0]), torch.get_num_threads(),
                               torch.is_inference_mode_enabled()))
        return self.layer(x)


@pytest.fixture
def share():
    s = CoreShare(2)
    yield s
    s.close()


def test_a_lone_forward_splits_its_rows_over_the_cores_and_gives_the_plain_result(share) -> None:
    f, x = Recorder(), torch.randn(40, 64)
    with torch.inference_mode():
        want = f.layer(x)
        got = share.run(f, x, lane_rows=8)
    assert torch.equal(got, want)
    assert sorted(rows for _, rows, _, _ in f.calls) == [20, 20]
    assert {threads for _, _, threads, _ in f.calls} == {1}, "each lane computes on one torch thread"
    assert any(name.startswith("talkrig-lane") for name, _, _, _ in f.calls)
    assert all(inference for *_, inference in f.calls), "a lane computes in its caller's grad mode"


def test_a_forward_beside_another_gets_one_core_and_is_not_split(share) -> None:
    f, x = Recorder(), torch.randn(40, 64)
    with share.claim() as mine:  # another forward is running
        assert mine == 2
        got = share.run(f, x, lane_rows=8)
    assert torch.equal(got, f.layer(x))
    assert [(rows, threads) for _, rows, threads, _ in f.calls] == [(40, 1)]
    assert f.calls[0][0] == threading.current_thread().name


def test_too_few_rows_to_split_take_the_free_cores_as_threads_or_stay_as_they_are(share) -> None:
    f = Recorder()
    share.run(f, torch.randn(1, 64), lane_rows=1)  # one heavy row (a speech window): every free core
    share.run(f, torch.randn(5, 64), lane_rows=8)  # small work: the caller's own thread count
    assert [(rows, threads) for _, rows, threads, _ in f.calls] == [(1, 2), (5, torch.get_num_threads())]


def test_one_core_never_splits() -> None:
    s, f = CoreShare(1), Recorder()
    s.run(f, torch.randn(64, 64), lane_rows=8)
    assert [(rows, threads) for _, rows, threads, _ in f.calls] == [(64, 1)]


def test_a_forward_gives_the_same_bits_on_one_thread_or_two() -> None:
    """A job keeps its result whether it ran alone (every core) or batched (one core a lane): the product
    the Whisper encoder's second MLP layer makes over a short window (few rows, long sums) is what MKL on
    AVX-512 CPUs sums in another order on two threads unless strict reproducibility is on, which
    importing ``motion_server`` turns on before MKL starts. A fresh interpreter, so nothing ran first."""
    import subprocess
    import sys

    code = (
        "import motion_server, torch\n"
        "torch.manual_seed(0)\n"
        "w = torch.randn(384, 1536)\n"
        "bad = []\n"
        "for m in (50, 100, 150, 200, 300):\n"
        "    x = torch.randn(m, 1536)\n"
        "    torch.set_num_threads(1); a = torch.nn.functional.linear(x, w)\n"
        "    torch.set_num_threads(2); b = torch.nn.functional.linear(x, w)\n"
        "    bad += [] if torch.equal(a, b) else [m]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", f"rows {out.stdout.strip()} differ between 1 and 2 threads"
