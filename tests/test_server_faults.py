"""Processes dying mid-job: a killed client must not disturb others; a killed server must give its
clients a clear error within their timeout, and they must work again once it is back."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from motion_server_helpers import SLOW_PACED, ServerProcess, server_env, speech_like_wav
from waiting import pump_until, returns_within, wait_running

from motion_server.client import MotionClient
from motion_server.protocol import ServerUnavailable

pytestmark = pytest.mark.timeout(300)


def test_killed_client_does_not_disturb_the_server(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=SLOW_PACED)
    victim_src = textwrap.dedent(f"""
        from motion_server.client import MotionClient
        from motion_server_helpers import speech_like_wav
        from waiting import wait_running
        c = MotionClient({s.address!r}, timeout_s=10)
        job = c.submit(speech_like_wav(1.0), {{"steps": 25}})   # ~15 s if nobody cancels it
        wait_running(job)
        print(job.id, flush=True)
        job.wait(600)  # waiting (and sending heartbeats) until the test kills this process
    """)
    victim = subprocess.Popen([sys.executable, "-c", victim_src], stdout=subprocess.PIPE, text=True, env=server_env())
    try:
        victim_job = victim.stdout.readline().strip()
        assert victim_job.startswith("j"), "the victim client never got its job running"
        with MotionClient(s.address, timeout_s=10) as c:
            mine = c.submit(speech_like_wav(2.0, seed=3), {"steps": 2, "seed": 9})
            pump_until(c, lambda: mine.id is not None, 10, "my job to be queued behind the victim's")
            victim.kill()  # SIGKILL mid-job: no goodbye, no cancel
            victim.wait(10)
            motion = mine.wait(60)  # a hang guard: a dead client's job must not hold mine
            assert motion.n_frames == 60 and motion.meta["seed"] == 9
            # the orphaned job was cancelled once its client stopped sending heartbeats, not run to its end
            assert c.status()["counts"] == {"done": 1, "error": 0, "cancelled": 1}
        log = s.log()
        assert log.count(f"job {victim_job}: the client stopped sending heartbeats") == 1, log  # said once
        assert f"job {victim_job} cancelled" in log and f"job {victim_job} done" not in log, log
    finally:
        victim.kill()
        s.close()


def test_killed_server_gives_clear_error_then_client_recovers(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine=SLOW_PACED)
    try:
        with MotionClient(s.address, timeout_s=3, retries=3) as c:
            job = c.submit(speech_like_wav(1.0), {"steps": 17})
            wait_running(job)
            s.kill()
            # the client gives up on its own 3 s timeout: wait()'s 60 s is only a hang guard (it would
            # raise TimeoutError, not ServerUnavailable)
            with pytest.raises(ServerUnavailable) as e:
                job.wait(60)
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
            wait_running(job)
            s.kill()
            s.start()  # back before the client's 20 s timeout: the new server has never heard of the job
            with pytest.raises(ServerUnavailable) as e:
                job.wait(60)  # a hang guard
            # the client noticed the new server, it did not just time out ("stopped responding")
            assert "restarted" in str(e.value) and "stopped responding" not in str(e.value)
            assert c.generate(speech_like_wav(1.0), {"steps": 1}).n_frames == 30
    finally:
        s.close()


def test_unreachable_server_error_names_the_fix() -> None:
    from motion_server_helpers import free_port

    addr = f"tcp://127.0.0.1:{free_port()}"
    with MotionClient(addr, timeout_s=1.5, retries=3) as c:
        with pytest.raises(ServerUnavailable) as e:  # the client's own 1.5 s (3 tries), not a hang
            returns_within(lambda: c.generate(speech_like_wav(0.5)), 60, "generate() with no server")
        assert "talkrig serve" in str(e.value) and addr in str(e.value) and "within 1.5 s (3 tries)" in str(e.value)
        with pytest.raises(ServerUnavailable):
            c.hello()
