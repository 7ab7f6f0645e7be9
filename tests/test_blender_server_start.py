"""The add-on's non-blocking local server start (Generate with auto-start, the Start button): a real
`python -m motion_server serve` child is launched and polled from the UI's timer, each poll returning at
once, until it answers; a server that cannot start ends with its log and the fix."""

from __future__ import annotations

import signal
import sys

import pytest
from motion_server_helpers import free_port
from waiting import returns_within, wait_until

from blender_addon import server_link


@pytest.fixture(autouse=True)
def _stop_what_we_started():
    yield
    server_link.stop_local()


def _drive(start: server_link.LocalStart, limit_s: float = 120.0) -> int:
    """Tick at the modal timer's cadence until the server answers; returns the number of ticks."""
    ticks = 0

    def tick() -> bool:
        nonlocal ticks
        ticks += 1
        return start.tick()

    wait_until(tick, limit_s, "the local server to answer", interval=0.1)
    return ticks


def test_local_start_polls_without_blocking_until_the_server_answers():
    address = f"tcp://127.0.0.1:{free_port()}"
    start = server_link.LocalStart(address, python=sys.executable, engine="energy")
    assert server_link.local_server_running()
    # frozen, the server cannot answer: each tick must still return (not ready) instead of waiting for it
    start.server.proc.send_signal(signal.SIGSTOP)
    try:
        for _ in range(3):
            assert returns_within(start.tick, 30, "a tick while the server cannot answer") is False
    finally:
        start.server.proc.send_signal(signal.SIGCONT)
    assert _drive(start) >= 1
    assert server_link.check(address)["engine"]
    # a second start while ours runs (Generate after Start) waits for the same process
    again = server_link.LocalStart(address, python=sys.executable, engine="energy")
    assert again.server is start.server and again.tick()
    assert server_link.stop_local() and not server_link.local_server_running()


def test_a_server_that_cannot_start_reports_its_log_and_the_fix():
    start = server_link.LocalStart(f"tcp://127.0.0.1:{free_port()}", python=sys.executable,
                                   engine="no-such-engine")
    with pytest.raises(server_link.ServerLinkError) as e:
        _drive(start, limit_s=60)
    msg = str(e.value)
    assert "unknown engine" in msg and "Server Python" in msg
    assert not server_link.local_server_running()


def test_a_remote_address_is_not_started_locally():
    with pytest.raises(server_link.ServerLinkError, match="is not on this computer; a local server binds 127.0.0.1"):
        server_link.LocalStart("tcp://192.0.2.7:5557")


def test_a_started_server_does_not_outlive_the_process_that_started_it():
    """The server runs in its own session (a Ctrl+C in Blender's terminal must not kill it mid-job), so
    the add-on stops it itself when Blender's Python exits."""
    import os
    import subprocess

    code = (
        "import sys\n"
        "from blender_addon import server_link\n"
        f"proc = server_link.start_local('tcp://127.0.0.1:{free_port()}', python=sys.executable, engine='energy')\n"
        "print(proc.pid, flush=True)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    pid = int(r.stdout.split()[-1])
    try:
        # not our child (its parent has exited): /proc is the only way to see it go
        wait_until(lambda: _is_zombie(pid), 15, "the local server to exit with the process that started it")
    finally:
        if not _is_zombie(pid):
            os.kill(pid, 9)


def _is_zombie(pid: int) -> bool:
    """Gone, or a zombie: either way no longer running."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True
