"""The motion server as a user meets it: a real `talkrig serve` process on loopback, real clients."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import zmq
from motion_server_helpers import PACED, SLOW_PACED, ServerProcess, free_port, server_env, speech_like_wav
from waiting import pump_until, wait_running

from motion_server import protocol as P
from motion_server.audio import load_audio
from motion_server.client import MotionClient
from motion_server.engine import GenerateOptions, create_engine
from motion_server.protocol import JobCancelled, ServerError, ServerUnavailable

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("srv"), engine="energy",
                      extra=["--max-audio-seconds", "20", "--max-message-mb", "1"])
    yield s
    s.close()


def _in_process(wav: bytes, **opts) -> object:
    from motion_server.pipeline import MotionPipeline

    # the server runs the one pipeline (transcript decision + engine), so the same pipeline is the reference
    return MotionPipeline(create_engine("energy")).generate(load_audio(wav), 16000, GenerateOptions(**opts))


def _normalised(meta: dict) -> dict:
    return json.loads(json.dumps(meta))  # tuples -> lists, as any wire format does


def test_generate_round_trip_matches_in_process_engine(server) -> None:
    wav = speech_like_wav(4.0, seed=1)
    with MotionClient(server.bind, timeout_s=10) as c:
        seen: list[tuple[float, str]] = []
        got = c.generate(wav, {"seed": 5, "intensity": 0.8}, progress=lambda f, s: seen.append((f, s)))
    want = _in_process(wav, seed=5, intensity=0.8)
    assert got.n_frames == want.n_frames == 120
    assert got.fps == want.fps
    assert np.array_equal(got.weights, want.weights) and np.array_equal(got.head, want.head)
    assert got.meta == _normalised(want.meta)
    assert got.weights[:, 17].max() > 0.1, "jawOpen should follow the loud syllables"
    assert seen and seen[0] == (0.0, "started")
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)


def test_path_input_and_real_recording(server, tmp_path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (scripts/setup.sh installs it): this test sends an .m4a container")
    clip = tmp_path / "jfk.m4a"  # the shipped speech clip in a container only ffmpeg decodes
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(REPO / "examples" / "jfk.flac"), "-c:a", "aac", str(clip)],
                   check=True, timeout=120)
    with MotionClient(server.bind, timeout_s=20) as c:
        got = c.generate(str(clip), {"fps": 25})
    samples = load_audio(clip)
    assert got.fps == 25 and abs(got.n_frames - len(samples) / 16000 * 25) <= 1


def test_hello_list_status(server) -> None:
    with MotionClient(server.bind, timeout_s=5) as c:
        h = c.hello()
        assert h["version"] == P.PROTOCOL_VERSION and h["engine"] == "energy"
        assert h["limits"]["max_audio_seconds"] == 20
        lst = c.list()
        assert "energy" in lst["engines"] and lst["info"]["device"] == "cpu"
        assert lst["options"]["seed"] == 0
        st = c.status()
        assert st["engine"] == "energy" and st["queue"] == [] and st["running"] is None
        assert c.ping() < 1.0


@pytest.mark.parametrize(
    "options, code",
    [({"seed": "1"}, "bad_type"), ({"tempo": 2}, "unknown_field"), ({"steps": -3}, "bad_value")],
)
def test_bad_options_get_structured_errors(server, options, code) -> None:
    with MotionClient(server.bind, timeout_s=5) as c, pytest.raises(ServerError) as e:
        c.generate(speech_like_wav(1.0), options)
    assert e.value.code == code


def test_undecodable_and_too_long_audio(server) -> None:
    with MotionClient(server.bind, timeout_s=10) as c:
        with pytest.raises(ServerError) as e:
            c.generate(b"RIFF this is not a wave file at all")
        assert e.value.code == "bad_audio" and "decode" in e.value.message
        with pytest.raises(ServerError) as e:
            c.generate(speech_like_wav(25.0))  # limit is 20 s; 25 s of 16-bit mono is 0.8 MB < 1 MB
        assert e.value.code == "audio_too_long" and "--max-audio-seconds" in e.value.message
        assert c.generate(speech_like_wav(1.0)).n_frames == 30  # and it keeps serving


def test_message_size_limit(server) -> None:
    with MotionClient(server.bind, timeout_s=10) as c:
        with pytest.raises(ServerError) as e:
            c.generate(speech_like_wav(36.0))  # 1.15 MB > the 1 MB limit: a structured refusal
        assert e.value.code == "too_large"
    # far beyond the limit zmq itself drops the connection (no memory spent); the server lives on
    with MotionClient(server.bind, timeout_s=2, retries=1) as c:
        with pytest.raises(ServerUnavailable):
            c.generate(b"\0" * (5 << 20))
    with MotionClient(server.bind, timeout_s=5) as c:
        assert c.generate(speech_like_wav(1.0)).n_frames == 30


def test_raw_dealer_errors_for_unknown_type_and_version(server) -> None:
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.connect(server.bind)
    try:
        replies = {}
        for rid, header in [("a", {"v": 1, "type": "dance", "id": "a"}), ("b", {"v": 7, "type": "ping", "id": "b"}),
                            ("c", {"v": 1, "type": "ping", "id": "c", "extra": 1})]:
            s.send_multipart([b"", P.pack_header(header)])
            assert s.poll(5000)
            frames = s.recv_multipart()
            replies[rid] = P.unpack_header(frames[1])
        assert replies["a"]["code"] == "unknown_type" and replies["a"]["id"] == "a"
        assert replies["b"]["code"] == "version_mismatch" and replies["b"]["details"]["supported"] == [1]
        assert replies["c"]["code"] == "unknown_field"
        # no delimiter frame (plain DEALER framing) works too, and the reply mirrors it
        s.send_multipart([P.pack_header({"v": 1, "type": "ping", "id": "d"})])
        assert s.poll(5000)
        frames = s.recv_multipart()
        assert len(frames) == 1 and P.unpack_header(frames[0])["type"] == "ping"
    finally:
        s.close(0)


def test_concurrent_clients_every_job_answered_once(server) -> None:
    """8 clients x 20 jobs in parallel: every job answered exactly once with its own result."""
    n_clients, n_jobs = 8, 20
    lengths = [0.5 + 0.1 * k for k in range(7)]
    wavs = {k: speech_like_wav(sec, seed=k) for k, sec in enumerate(lengths)}
    results: dict[tuple[int, int], object] = {}
    errors: list[BaseException] = []

    def worker(ci: int) -> None:
        try:
            with MotionClient(server.bind, timeout_s=30) as c:
                for j in range(n_jobs):
                    k = (ci + j) % len(lengths)
                    m = c.generate(wavs[k], {"seed": ci * 1000 + j})
                    assert (ci, j) not in results
                    results[(ci, j)] = (k, m)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    assert not errors, errors[:3]
    assert len(results) == n_clients * n_jobs
    reference = {k: _in_process(w) for k, w in wavs.items()}
    for (ci, j), (k, m) in results.items():
        assert m.meta["seed"] == ci * 1000 + j, "a result went to the wrong request"
        assert m.n_frames == round(lengths[k] * 30)
        assert np.array_equal(m.weights, reference[k].weights)
    with MotionClient(server.bind, timeout_s=5) as c:
        st = c.status()
    assert st["queue"] == [] and st["running"] is None


def test_non_loopback_bind_without_keys_is_refused() -> None:
    port = free_port()
    p = subprocess.run([sys.executable, "-m", "motion_server", "serve", "--engine", "energy",
                        "--bind", f"tcp://0.0.0.0:{port}"], capture_output=True, text=True, timeout=60,
                       env=server_env())
    assert p.returncode == 2
    assert "refusing to bind" in p.stderr and "talkrig keygen" in p.stderr


def test_ipc_bind(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine="energy", bind=f"ipc://{tmp_path}/talkrig.sock")
    try:
        with MotionClient(s.bind, timeout_s=5) as c:
            assert c.generate(speech_like_wav(1.0)).n_frames == 30
            assert c.shutdown()["mode"] == "cancel"  # ipc peers are local
        assert s.proc.wait(15) == 0
    finally:
        s.close()


def test_cancel_queued_and_running_jobs(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=PACED)
    try:
        with MotionClient(s.bind, timeout_s=10) as c:
            running = c.submit(speech_like_wav(1.0), {"steps": 40})  # 40 engine checks, ~4 s
            queued = c.submit(speech_like_wav(1.0), {"steps": 40})
            wait_running(running)
            pump_until(c, lambda: queued.id is not None, 10, "the second job to be queued")
            st = c.status()
            assert st["running"]["job"] == running.id and [q["job"] for q in st["queue"]] == [queued.id]
            assert c.cancel(queued.id)["state"] == "cancelled"
            after_cancel: list[float] = []
            running.on_progress = lambda f, _stage: after_cancel.append(f)
            running.cancel()
            with pytest.raises(JobCancelled):
                running.wait(60)  # a hang guard
            # it stopped at its next engine check: at most the step in flight reported progress after
            # the cancel, nowhere near the ~35 steps left
            assert len(after_cancel) <= 2, f"{len(after_cancel)} progress steps after the cancel"
            with pytest.raises(JobCancelled):
                queued.wait(5)
            cancel_event = threading.Event()
            with pytest.raises(JobCancelled):  # cancelled from the first progress event on
                c.generate(speech_like_wav(1.0), {"steps": 40}, progress=lambda f, s: cancel_event.set(),
                           cancel_event=cancel_event)
            with pytest.raises(ServerError) as e:
                c.cancel("jnosuchjob")
            assert e.value.code == "not_found"
            assert c.generate(speech_like_wav(1.0), {"steps": 2}).n_frames == 30
    finally:
        s.close()


def test_sigterm_cancels_running_job_and_says_so(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=SLOW_PACED)
    try:
        with MotionClient(s.bind, timeout_s=10) as c:
            job = c.submit(speech_like_wav(1.0), {"steps": 17})  # ~10 s
            wait_running(job)
            s.proc.terminate()
            with pytest.raises(JobCancelled) as e:
                job.wait(10)
            assert "interrupted" in e.value.reason
        assert s.proc.wait(15) == 0
        log = s.log()
        assert f"cancelled ['{job.id}']" in log and "server stopped" in log
    finally:
        s.close()


def test_shutdown_finish_mode_runs_queued_jobs(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=PACED)
    try:
        with MotionClient(s.bind, timeout_s=10) as c, MotionClient(s.bind, timeout_s=10) as admin:
            jobs = [c.submit(speech_like_wav(1.0), {"steps": 3}) for _ in range(2)]
            while any(j.id is None for j in jobs):
                for j in jobs:
                    j.poll()
            r = admin.shutdown(mode="finish")
            assert sorted(r["finishing"]) == sorted(j.id for j in jobs)
            with pytest.raises(ServerError) as e:
                c.generate(speech_like_wav(1.0))
            assert e.value.code == "shutting_down"
            assert all(j.wait(10).n_frames == 30 for j in jobs)
        assert s.proc.wait(15) == 0
        # the log says which jobs were finished during the shutdown (FIFO order) and that none was cancelled
        assert f"during shutdown: finished {[j.id for j in jobs]}, failed none, cancelled none" in s.log()
    finally:
        s.close()


@pytest.mark.parametrize(
    "addr, local",
    [("tcp://127.0.0.1:5557", True), ("tcp://localhost:5557", True), ("tcp://[::1]:5557", True),
     ("ipc:///tmp/x.sock", True), ("tcp://0.0.0.0:5557", False), ("tcp://*:5557", False),
     ("tcp://192.168.1.4:5557", False), ("tcp://eth0:5557", False), ("tcp://[::]:5557", False)],
)
def test_bind_policy(addr, local) -> None:
    from motion_server.server.config import BindRefused, check_binds, is_local_address

    assert is_local_address(addr) is local
    if local:
        check_binds([addr], curve=False)
    else:
        with pytest.raises(BindRefused, match="talkrig keygen"):
            check_binds([addr], curve=False)
        check_binds([addr], curve=True)


def test_ipv6_loopback_bind(tmp_path) -> None:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s6:
            s6.bind(("::1", 0))
            port = s6.getsockname()[1]
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    s = ServerProcess(tmp_path, engine="energy", bind=f"tcp://[::1]:{port}")
    try:
        with MotionClient(s.bind, timeout_s=5) as c:
            assert c.generate(speech_like_wav(0.5)).n_frames == 15
    finally:
        s.close()


def test_procedural_engine_same_seed_same_motion_as_in_process(tmp_path) -> None:
    """The server does not care which engine it runs: the seeded procedural performer round-trips too."""
    s = ServerProcess(tmp_path, engine="procedural")
    wav = speech_like_wav(2.0, seed=7)
    opts = {"seed": 3, "transcript": "hello there"}
    try:
        with MotionClient(s.address, timeout_s=60) as c:
            a = c.generate(wav, opts)
            b = c.generate(wav, {**opts, "seed": 4})
    finally:
        s.close()
    from motion_server.pipeline import MotionPipeline

    want = MotionPipeline(create_engine("procedural")).generate(load_audio(wav), 16000, GenerateOptions(**opts))
    assert np.array_equal(a.weights, want.weights) and np.array_equal(a.head, want.head)
    assert a.meta == _normalised(want.meta)
    assert not (np.array_equal(a.weights, b.weights) and np.array_equal(a.head, b.head)), "seed had no effect"
