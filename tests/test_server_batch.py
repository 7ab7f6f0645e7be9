"""Batched serving: a real `talkrig serve` with the bundled diffusion model packs the windows of
concurrent jobs into shared denoiser forwards, and every job still gets exactly its solo result."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from motion_server_helpers import ServerProcess, speech_like_wav

from motion_server.audio import load_audio
from motion_server.client import JobCancelled, MotionClient
from motion_server.engine import GenerateOptions

pytestmark = pytest.mark.timeout(600)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MAX_BATCH = 3  # windows per forward: small, so packing several jobs and the bound are both visible


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("batch"), engine="diffusion",
                      extra=["--device", "cpu", "--no-transcribe", "--max-batch", str(MAX_BATCH),
                             "--max-audio-seconds", "120", "--max-message-mb", "8"], wait_s=180)
    yield s
    s.close()


@pytest.fixture(scope="module")
def solo():
    """The same pipeline in this process, one job at a time: what each job must equal."""
    from motion_server.model.engine import DiffusionEngine
    from motion_server.pipeline import MotionPipeline

    pipeline = MotionPipeline(DiffusionEngine(device="cpu"))
    return lambda wav, opts: pipeline.generate(load_audio(wav), 16000, GenerateOptions(**opts))


def _clip(seconds: float, offset: float = 0.0) -> bytes:
    """A cut of the JFK recording (real speech) as WAV bytes."""
    import io

    import soundfile as sf

    x = load_audio(EXAMPLES / "jfk.flac")
    a = x[int(offset * 16000): int((offset + seconds) * 16000)]
    if a.size < seconds * 16000:  # longer than the recording: repeat it
        a = np.tile(x, int(np.ceil(seconds * 16000 / x.size)))[: int(seconds * 16000)]
    b = io.BytesIO()
    sf.write(b, a, 16000, format="WAV", subtype="FLOAT")
    return b.getvalue()


def _until_sampling(*jobs) -> None:
    """Poll until every job reports the sampling stage (its windows are in the batcher)."""
    deadline = time.monotonic() + 120
    while any(j.poll().stage != "sampling" for j in jobs):
        assert not any(j.done for j in jobs), [j.status for j in jobs]
        assert time.monotonic() < deadline, [j.status for j in jobs]
        time.sleep(0.01)  # polling cadence, not synchronisation: the loop ends on the jobs' stage


def _same(got, want) -> None:
    assert got.n_frames == want.n_frames
    assert np.array_equal(got.weights, want.weights) and np.array_equal(got.head, want.head)
    assert got.meta["seed"] == want.meta["seed"] and got.meta["style"] == want.meta["style"]


# Several jobs of different lengths, seeds, styles, guidance (2 rows a window), samplers, and a clip
# shorter than one window (its own window length: batched with nobody, never padded).
JOBS = [
    (lambda: _clip(4.0), {"seed": 1}),
    (lambda: _clip(6.0, 3.0), {"seed": 2, "style": "happy", "guidance": 2.0}),
    (lambda: speech_like_wav(5.0, seed=3), {"seed": 3, "sampler": "ddim", "steps": 6}),
    (lambda: _clip(1.5, 1.0), {"seed": 4}),
    (lambda: (EXAMPLES / "hello_flite.flac").read_bytes(),
     {"seed": 5, "transcript": (EXAMPLES / "hello_flite.txt").read_text()}),  # phones + closure constraint
    (lambda: _clip(5.0, 5.0), {"seed": 6}),
]


def test_concurrent_clients_get_their_solo_results_and_forwards_are_shared(server, solo) -> None:
    wavs = [make() for make, _ in JOBS]
    results: dict[int, object] = {}
    errors: list[BaseException] = []
    go = threading.Barrier(len(JOBS))

    def client(i: int) -> None:
        try:
            with MotionClient(server.address, timeout_s=120) as c:
                go.wait(30)
                results[i] = c.generate(wavs[i], JOBS[i][1])
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(JOBS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    for i, (_, opts) in enumerate(JOBS):
        _same(results[i], solo(wavs[i], opts))
    assert results[4].meta["phones"] == "aligned"
    with MotionClient(server.address, timeout_s=10) as c:
        st = c.status()
    b = st["batching"]
    assert b["max_batch"] == MAX_BATCH
    assert b["largest_batch"] == MAX_BATCH, "forwards are filled up to --max-batch windows, never beyond"
    assert b["most_jobs"] >= 2, "windows of different jobs shared a forward"
    assert st["running"] is None and st["running_jobs"] == [] and not st["busy"]


def test_a_short_job_submitted_after_a_long_one_finishes_first(server, solo) -> None:
    long_wav, short_wav = _clip(90.0), _clip(3.0, 2.0)
    with MotionClient(server.address, timeout_s=120) as c:
        long_job = c.submit(long_wav, {"seed": 7})
        _until_sampling(long_job)
        short_job = c.submit(short_wav, {"seed": 8})
        short = short_job.wait(120)
        # messages arrive in order, so had the long job ended first its result would be in already
        assert not long_job.done, "the short job waited for the long one"
        assert {j["job"] for j in c.status()["running_jobs"]} == {long_job.id}
        long = long_job.wait(300)
    _same(short, solo(short_wav, {"seed": 8}))
    _same(long, solo(long_wav, {"seed": 7}))


def test_cancelling_one_job_of_a_batch_leaves_the_others_exact(server, solo) -> None:
    # two long jobs, then the victim: it is prepared while they sample, and joins their forwards
    wavs = [_clip(60.0), _clip(50.0, 4.0), _clip(20.0)]
    opts = [{"seed": 11}, {"seed": 13, "guidance": 1.5}, {"seed": 12}]
    with MotionClient(server.address, timeout_s=120) as c:
        jobs = [c.submit(w, o) for w, o in zip(wavs, opts, strict=True)]
        victim = jobs[2]
        _until_sampling(victim)
        assert not all(j.done for j in jobs[:2]), "the victim never shared a forward"
        victim.cancel()
        with pytest.raises(JobCancelled):
            victim.wait(120)
        kept = [jobs[0].wait(120), jobs[1].wait(120)]
    _same(kept[0], solo(wavs[0], opts[0]))
    _same(kept[1], solo(wavs[1], opts[1]))


def test_bench_server_batch_compares_concurrent_with_one_after_another(tmp_path) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "batch.json"
    r = subprocess.run([sys.executable, "-m", "motion_server", "bench", "--what", "server-batch", "--durations", "2",
                        "--clients", "1,8", "--repeats", "1", "--warmup", "0", "--device", "cpu", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    one, eight = json.loads(out.read_text())["results"]  # one row per client count, on one server
    assert (one["clients"], eight["clients"]) == (1, 8)
    for row in (one, eight):
        assert row["what"] == "server-batch" and row["duration_s"] == 2
        assert row["solo_equal"] and row["max_abs_diff"] == 0.0
        assert row["throughput_ratio"] == row["sequential_median_s"] / row["concurrent_median_s"]
        assert row["clips_per_s"] == row["clients"] / row["concurrent_median_s"]
        assert row["rtf_median"] == row["clients"] * 2 / row["concurrent_median_s"]
    assert eight["batching"]["forwards"] > 0 and eight["batching"]["largest_batch"] <= eight["batching"]["max_batch"]
    assert eight["batching"]["most_jobs"] >= 2, "the 8 clients' windows shared forwards"
