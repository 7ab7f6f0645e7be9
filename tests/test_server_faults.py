"""Processes dying mid-job: a killed client must not disturb others; a killed server must give its
clients a clear error within their timeout, and they must work again once it is back."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
from motion_server_helpers import SLOW_PACED, ServerProcess, server_env, speech_like_wav

from motion_server.client import MotionClient
from motion_server.protocol import ServerUnavailable

pytestmark = pytest.mark.timeout(300)


def _wait_running(job, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while job.poll().state != "running":
        assert time.monotonic() < deadline, f"job never started: {job.status}"
        time.sleep(0.02)


def test_killed_client_does_not_disturb_the_server(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=SLOW_PACED)
    victim_src = textwrap.dedent(f"""
        import sys, time
        from motion_server.client import MotionClient
        from motion_server_helpers import speech_like_wav
        c = MotionClient({s.address!r}, timeout_s=10)
        job = c.submit(speech_like_wav(1.0), {{"steps": 25}})   # ~15 s if nobody cancels it
        while job.poll().state != "running":
            time.sleep(0.02)
        print(job.id, flush=True)
        time.sleep(600)
    """)
    victim = subprocess.Popen([sys.executable, "-c", victim_src], stdout=subprocess.PIPE, text=True, env=server_env())
    try:
        victim_job = victim.stdout.readline().strip()
        assert victim_job.startswith("j"), "the victim client never got its job running"
        with MotionClient(s.address, timeout_s=10) as c:
            mine = c.submit(speech_like_wav(2.0, seed=3), {"steps": 2, "seed": 9})
            time.sleep(0.3)
            victim.kill()  # SIGKILL mid-job: no goodbye, no cancel
            victim.wait(10)
            t0 = time.monotonic()
            motion = mine.wait(30)
            waited = time.monotonic() - t0
            assert motion.n_frames == 60 and motion.meta["seed"] == 9
            # the orphaned job was cancelled once its client stopped sending heartbeats (~4 s), long
            # before its 15 s of work would have ended
            assert waited < 9.0, f"my job waited {waited:.1f} s behind a dead client's job"
            assert c.ping() < 1.0
        log = s.log()
        assert log.count(f"job {victim_job}: the client stopped sending heartbeats") == 1, log  # said once
    finally:
        victim.kill()
        s.close()


def test_killed_server_gives_clear_error_then_client_recovers(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=SLOW_PACED)
    try:
        with MotionClient(s.address, timeout_s=3, retries=3) as c:
            job = c.submit(speech_like_wav(1.0), {"steps": 17})
            _wait_running(job)
            s.kill()
            t0 = time.monotonic()
            with pytest.raises(ServerUnavailable) as e:
                job.wait(20)
            took = time.monotonic() - t0
            assert took < 3 + 1.5, f"the error took {took:.1f} s; the timeout is 3 s"
            msg = str(e.value)
            assert "stopped responding" in msg and s.address in msg and "talkrig serve" in msg
            with pytest.raises(ServerUnavailable) as e:  # while it is down: a request fails clearly too
                c.status()
            assert "talkrig serve" in str(e.value)
            s.start()  # same address
            motion = c.generate(speech_like_wav(1.0), {"steps": 2})
            assert motion.n_frames == 30
    finally:
        s.close()


def test_server_restart_within_timeout_fails_the_lost_job(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=SLOW_PACED)
    try:
        with MotionClient(s.address, timeout_s=20) as c:
            job = c.submit(speech_like_wav(1.0), {"steps": 17})
            _wait_running(job)
            s.kill()
            s.start()  # back before the client's 20 s timeout: the new server has never heard of the job
            t0 = time.monotonic()
            with pytest.raises(ServerUnavailable) as e:
                job.wait(20)
            assert "restarted" in str(e.value) and time.monotonic() - t0 < 5
            assert c.generate(speech_like_wav(1.0), {"steps": 1}).n_frames == 30
    finally:
        s.close()


def test_unreachable_server_error_names_the_fix() -> None:
    from motion_server_helpers import free_port

    addr = f"tcp://127.0.0.1:{free_port()}"
    with MotionClient(addr, timeout_s=1.5, retries=3) as c:
        t0 = time.monotonic()
        with pytest.raises(ServerUnavailable) as e:
            c.generate(speech_like_wav(0.5))
        assert time.monotonic() - t0 < 3.0
        assert "talkrig serve" in str(e.value) and addr in str(e.value)
        with pytest.raises(ServerUnavailable):
            c.hello()
