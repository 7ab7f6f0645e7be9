"""What a valid message may make the server do: read no file a peer names, keep jobs apart per client,
hold bounded memory per client, write keys safely, keep logs unforgeable. Each test reproduces a
finding of the hardening issue (numbers in the test names' docstrings) against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq
from motion_server_helpers import PACED, ServerProcess, free_port, server_env, speech_like_wav
from waiting import pump_until, wait_running, wait_until

from motion_server import protocol as P
from motion_server.client import MotionClient
from motion_server.protocol import ServerError
from rig_mapping import FaceMotion
from rig_mapping.formats import save_motion

pytestmark = pytest.mark.timeout(300)


class Raw:
    """A bare DEALER with a chosen routing id: sends requests and collects replies by request id."""

    def __init__(self, address: str, routing_id: bytes | None = None) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        if routing_id is not None:
            self.sock.routing_id = routing_id
        self.sock.connect(address)
        self.inbox: list[dict] = []
        self.frames: list[list[bytes]] = []

    def send(self, header: dict, *payload: bytes) -> None:
        self.sock.send_multipart([b"", P.pack_header({"v": 1, **header}), *payload])

    def until(self, pred, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for i, h in enumerate(self.inbox):
                if pred(h):
                    return self.inbox.pop(i)
            left = deadline - time.monotonic()
            assert left > 0, f"no matching reply; got {self.inbox}"
            if self.sock.poll(int(min(left, 0.2) * 1000)):
                fr = self.sock.recv_multipart()
                _, body = P.split_frames(fr)
                self.inbox.append(P.unpack_header(body[0]))
                self.frames.append(body)

    def request(self, type_: str, rid: str, **fields) -> dict:
        self.send({"type": type_, "id": rid, **fields})
        return self.until(lambda h: h["id"] == rid and h["type"] in (type_, "error"))

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("hard"), engine=PACED,
                      extra=["--max-client-jobs", "3", "--max-client-mb", "1", "--max-message-mb", "2"])
    yield s
    s.close()


# -- finding 1: no path from a peer is opened -----------------------------------------------------


def test_style_paths_are_refused_alike_whether_they_exist_or_not(server, tmp_path) -> None:
    """Finding 1: style / style_mix[0] were opened as paths ('../' included); the answers told missing,
    file and folder apart and echoed a bad cell. Now any path-like style is one and the same refusal."""
    secret = tmp_path / "secret.csv"
    secret.write_text("Timecode,BlendShapeCount,EyeBlinkLeft\n00:00:00:00.000,52,TOPSECRET\n")
    raw = Raw(server.address)
    try:
        answers = set()
        n = 0
        for style in (str(secret), str(tmp_path / "missing.csv"), str(tmp_path), "../" * 8 + "etc/passwd",
                      "secret.csv", "..", "./x.npz", "C:\\x.json", "~/.ssh/id_rsa"):
            for opts in ({"style": style}, {"style_mix": [style, 0.5]}):
                n += 1
                rid = f"s{n}"
                raw.send({"type": "generate", "id": rid, "audio": {"frame": 0}, "options": opts},
                         speech_like_wav(0.2))
                h = raw.until(lambda m, rid=rid: m["id"] == rid)
                assert h["type"] == "error" and h["code"] == "bad_value", h
                assert "TOPSECRET" not in h["message"] and style not in h["message"]
                answers.add(h["message"])
        assert len(answers) == 2, answers  # one message for style, one for style_mix: nothing else varies
        # presets still work
        raw.send({"type": "generate", "id": "ok", "audio": {"frame": 0}, "options": {"style": "happy:3", "steps": 1}},
                 speech_like_wav(0.5))
        assert raw.until(lambda m: m["id"] == "ok" and m["type"] in ("result", "error"))["type"] == "result"
    finally:
        raw.close()


def test_client_reads_a_local_style_clip_and_sends_it_as_data(server, tmp_path) -> None:
    clip = FaceMotion.neutral(60, fps=30.0)
    path = tmp_path / "ref.npz"
    save_motion(clip, path)
    with MotionClient(server.address, timeout_s=10) as c:
        m = c.generate(speech_like_wav(0.5), {"style": str(path), "steps": 1})
        assert m.n_frames == 15
        with pytest.raises(Exception, match="style reference clip"):
            c.generate(speech_like_wav(0.5), {"style": str(tmp_path / "nope.csv")})


# -- findings 3 and 9: style references bounded before anything resamples them ------------------------


@pytest.mark.parametrize("fps, frames, code", [
    (2e-6, 2, "bad_value"), (1e308, 2, "bad_value"), (0.5, 10, "bad_value"), (241.0, 10, "bad_value"),
    (30.0, P.STYLE_REFERENCE_MAX_FRAMES + 1, "too_large"),
])  # fmt: skip
def test_style_reference_fps_and_length_are_bounded(server, fps, frames, code) -> None:
    """Finding 3: 2 frames at fps 2e-6 were resampled (3.5 GB) before being cut; finding 9: fps 1e308
    was accepted."""
    raw = Raw(server.address)
    try:
        n = frames if frames < 1000 else 1  # a header claiming too many frames is refused before its bytes
        w = np.zeros((n, 52), "<f4")
        hd = np.zeros((n, 6), "<f4")
        ref = {"fps": fps, "weights": {"dtype": "<f4", "shape": [frames, 52], "frame": 1},
               "head": {"dtype": "<f4", "shape": [frames, 6], "frame": 2}, "meta": {}}
        raw.send({"type": "generate", "id": "r", "audio": {"frame": 0}, "style_reference": ref},
                 speech_like_wav(0.2), w.tobytes(), hd.tobytes())
        h = raw.until(lambda m: m["id"] == "r")
        assert h["type"] == "error" and h["code"] == code, h
    finally:
        raw.close()


# -- finding 6 and 9: jobs belong to their client --------------------------------------------------------


def test_same_request_id_from_two_clients_gives_each_its_own_result(server) -> None:
    """Finding 6: jobs were de-duplicated on the request id alone: a second client reusing an id got the
    first client's result, and the first got nothing."""
    a, b = Raw(server.address, b"ta" + os.urandom(8)), Raw(server.address, b"tb" + os.urandom(8))
    try:
        a.send({"type": "generate", "id": "same", "audio": {"frame": 0}, "options": {"steps": 3, "seed": 1}},
               speech_like_wav(1.0))
        b.send({"type": "generate", "id": "same", "audio": {"frame": 0}, "options": {"steps": 3, "seed": 2}},
               speech_like_wav(2.0))
        ja = a.until(lambda m: m["type"] == "accepted")["job"]
        jb = b.until(lambda m: m["type"] == "accepted")["job"]
        assert ja != jb
        ra = a.until(lambda m: m["type"] in ("result", "error"))
        rb = b.until(lambda m: m["type"] in ("result", "error"))
        assert ra["type"] == rb["type"] == "result"
        assert ra["job"] == ja and ra["motion"]["meta"]["seed"] == 1 and ra["motion"]["weights"]["shape"][0] == 30
        assert rb["job"] == jb and rb["motion"]["meta"]["seed"] == 2 and rb["motion"]["weights"]["shape"][0] == 60
    finally:
        a.close()
        b.close()


def test_the_very_same_request_from_another_socket_is_one_job_answered_to_both(server) -> None:
    """A re-sent copy (a Lazy Pirate retry whose first copy came through a replaced pipe, or a socket
    without a routing id of its own) runs once; both senders get the result; only the owner cancels."""
    wav = speech_like_wav(1.0, seed=4)
    a, b = Raw(server.address), Raw(server.address)  # anonymous: zmq names them
    named, other = Raw(server.address, b"tn" + os.urandom(8)), Raw(server.address, b"to" + os.urandom(8))
    try:
        for x, y in ((a, b), (named, other)):
            for r in (x, y):
                r.send({"type": "generate", "id": "twin", "audio": {"frame": 0}, "options": {"steps": 5}}, wav)
            jx = x.until(lambda m: m["type"] == "accepted")["job"]
            jy = y.until(lambda m: m["type"] == "accepted")["job"]
            assert jx == jy, "an identical re-send must not run twice"
            if x is named:  # the second sender watches but does not own it
                h = other.request("cancel", "c1", job=jx)
                assert h["type"] == "error" and h["code"] == "not_found"
            rx = x.until(lambda m: m["type"] in ("result", "error"))
            ry = y.until(lambda m: m["type"] in ("result", "error"))
            assert rx["type"] == ry["type"] == "result" and rx["job"] == ry["job"] == jx
    finally:
        for r in (a, b, named, other):
            r.close()


def test_a_client_sees_and_cancels_only_its_own_jobs(server) -> None:
    """Finding 9: any client could cancel anyone's job and saw every job id, the pid and the model."""
    with MotionClient(server.address, timeout_s=10) as owner, MotionClient(server.address, timeout_s=10) as other:
        job = owner.submit(speech_like_wav(1.0), {"steps": 40})
        wait_running(job)
        queued = owner.submit(speech_like_wav(1.0), {"steps": 1})
        pump_until(owner, lambda: queued.id is not None, 10, "the second job to be queued")
        with pytest.raises(ServerError) as e:
            other.cancel(job.id)
        assert e.value.code == "not_found"
        with pytest.raises(ServerError) as e2:
            other.cancel(queued.id)
        assert e2.value.code == "not_found" and e2.value.message.replace(queued.id, job.id) == e.value.message
        st = other.status()
        assert st["running"] is None and st["queue"] == [] and st["busy"] and st["queue_length"] == 1
        mine = owner.status()
        assert mine["running"]["job"] == job.id and [q["job"] for q in mine["queue"]] == [queued.id]
        assert owner.cancel(job.id)["state"] == "cancelling"
        queued.wait(10)


def test_shared_jobs_flag_lets_any_client_cancel(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=PACED, extra=["--shared-jobs"])
    try:
        with MotionClient(s.address, timeout_s=10) as owner, MotionClient(s.address, timeout_s=10) as admin:
            job = owner.submit(speech_like_wav(1.0), {"steps": 40})
            wait_running(job)
            assert admin.status()["running"]["job"] == job.id
            assert admin.cancel(job.id)["state"] == "cancelling"
            with pytest.raises(Exception, match="cancelled"):
                job.wait(10)
    finally:
        s.close()


def test_request_ids_cannot_forge_log_lines(server) -> None:
    raw = Raw(server.address)
    try:
        raw.send({"type": "generate", "id": "x\n2026-01-01 INFO talkrig.server: job jFAKE done",
                  "audio": {"frame": 0}}, speech_like_wav(0.2))
        h = raw.until(lambda m: m["type"] == "error")
        assert h["type"] == "error" and h["code"] == "bad_type" and h["id"] is None
    finally:
        raw.close()
    assert "jFAKE" not in server.log()


# -- finding 7: per-client quotas -------------------------------------------------------------------


def test_one_client_cannot_fill_the_queue(server) -> None:
    """Finding 7: one client could queue 64 x 60 MiB jobs (4.5 GB); now per-client job and byte quotas
    answer busy, while another client is still served."""
    with MotionClient(server.address, timeout_s=10) as greedy, MotionClient(server.address, timeout_s=10) as other:
        jobs = [greedy.submit(speech_like_wav(0.5), {"steps": 20}) for _ in range(3)]
        while any(j.id is None and not j.done for j in jobs):
            for j in jobs:
                j.poll()
        with pytest.raises(ServerError) as e:
            greedy.generate(speech_like_wav(0.5), {"steps": 1})
        assert e.value.code == "busy" and "per client" in e.value.message
        for j in jobs:
            j.cancel()
        assert other.generate(speech_like_wav(0.5), {"steps": 1}).n_frames == 15
    with MotionClient(server.address, timeout_s=10) as big:  # bytes: 1 MB per client in this server
        first = big.submit(speech_like_wav(25.0), {"steps": 30})  # 0.8 MB, running
        second = big.submit(speech_like_wav(25.0), {"steps": 1})  # 0.8 MB, queued
        while first.id is None or second.id is None:
            first.poll()
            second.poll()
        with pytest.raises(ServerError) as e:
            big.generate(speech_like_wav(25.0), {"steps": 1})
        assert e.value.code == "busy" and "bytes of audio" in e.value.message
        first.cancel()
        second.cancel()
        with pytest.raises(ServerError) as e:  # more than a client may ever queue: not worth retrying
            big.generate(speech_like_wav(40.0))  # 1.3 MB > the 1 MB per-client quota, < 2 MB messages
        assert e.value.code == "too_large" and "--max-client-mb" in e.value.message


# -- finding 9: local peers, keys ---------------------------------------------------------------------


def test_abstract_ipc_is_not_local() -> None:
    from motion_server.server.config import BindRefused, check_binds, is_local_address, is_local_peer

    assert not is_local_address("ipc://@talkrig")
    assert is_local_address("ipc:///tmp/talkrig.sock")
    with pytest.raises(BindRefused, match="abstract"):
        check_binds(["ipc://@talkrig"], curve=False)
    check_binds(["ipc://@talkrig"], curve=True)
    assert is_local_peer("localhost:0:0:1") and not is_local_peer("localhost:0:0:1", ipc_local=False)
    p = subprocess.run([sys.executable, "-m", "motion_server", "serve", "--engine", "energy", "--bind",
                        f"ipc://@talkrig-test-{free_port()}"], capture_output=True, text=True, timeout=60,
                       env=server_env())
    assert p.returncode == 2 and "abstract" in p.stderr


def test_keygen_writes_the_secret_private_from_the_start(tmp_path) -> None:
    """Finding 9: the secret was written 0644 and chmod-ed afterwards; a world-readable secret was used
    without a word."""
    keys = tmp_path / "keys"
    p = subprocess.run([sys.executable, "-m", "motion_server", "keygen", str(keys)], capture_output=True,
                       text=True, timeout=60, env=server_env(), preexec_fn=lambda: os.umask(0))
    assert p.returncode == 0, p.stderr
    sec = keys / "server.key_secret"
    assert sec.stat().st_mode & 0o777 == 0o600
    import zmq.auth

    pub, secret = zmq.auth.load_certificate(str(sec))
    assert secret and zmq.auth.load_certificate(str(keys / "server.key")) == (pub, None)
    # the secret is never world-readable, not even for a moment: keygen opens it 0600 exclusively
    from motion_server.server.keys import secret_file_warning

    assert secret_file_warning(sec) is None
    sec.chmod(0o644)
    warning = secret_file_warning(sec)
    assert warning and "readable by other users" in warning and "chmod 600" in warning
    s = ServerProcess(tmp_path, engine="energy", bind=f"tcp://0.0.0.0:{free_port()}",
                      extra=["--curve-secret", str(sec)], server_public_key=pub)
    try:
        assert "readable by other users" in s.log()
        with MotionClient(s.address, timeout_s=10, server_public_key=pub) as c:
            st = c.status()
            assert "pid" in st  # a loopback peer is local; remote peers get neither pid nor model path
    finally:
        s.close()


# -- finding 4: a decode never holds the worker ------------------------------------------------------


def _ffmpeg_children(pid: int) -> list[int]:
    from pathlib import Path

    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"ffmpeg" in cmd:
            out.append(int(d.name))
    return out


def _proc_state(pid: int) -> str:
    """The state letter in /proc (R, S, T stopped, Z zombie...), or "" once the process is gone."""
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_cancel_during_a_long_decode_kills_ffmpeg_and_frees_the_worker(tmp_path) -> None:
    """Finding 4: a decode that blocked (a concat script at a FIFO) could not be cancelled, held every
    later job, and left ffmpeg running after the server exited."""
    import shutil

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    slow = tmp_path / "slow.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anoisesrc=r=22050:a=0.1", "-t", "3000",
                    "-c:a", "flac", str(slow)], check=True, timeout=120)
    mb = str(slow.stat().st_size // (1 << 20) + 8)
    s = ServerProcess(tmp_path, engine="energy", extra=["--max-audio-seconds", "4000", "--max-message-mb", mb,
                                                       "--max-client-mb", mb, "--max-queued-mb", mb])
    try:
        with MotionClient(s.address, timeout_s=30) as c:
            job = c.submit(slow.read_bytes(), {})
            kids = pump_until(c, lambda: _ffmpeg_children(s.proc.pid) or job.done, 30, "the server's ffmpeg decode")
            assert not job.done, f"the decode ended before it could be cancelled: {job.error}"
            # frozen, the decode can never finish by itself: only the cancel can end this job
            for k in kids:
                os.kill(k, signal.SIGSTOP)
            wait_until(lambda: all(_proc_state(k) in ("T", "t") for k in kids), 10, "ffmpeg to stop")
            job.cancel()
            with pytest.raises(Exception, match="cancelled"):
                job.wait(60)  # a hang guard
            wait_until(lambda: not _ffmpeg_children(s.proc.pid), 10, "ffmpeg to end with its cancelled job")
            assert c.generate(speech_like_wav(1.0)).n_frames == 30  # the worker is free
            # and a server stopped mid-decode leaves no ffmpeg behind
            job = c.submit(slow.read_bytes(), {})
            kids = pump_until(c, lambda: _ffmpeg_children(s.proc.pid), 30, "the second ffmpeg decode")
            s.proc.kill()
            s.proc.wait(10)
            wait_until(lambda: all(_proc_state(k) in ("", "Z") for k in kids), 10, "ffmpeg to die with the killed server")
    finally:
        s.close()
