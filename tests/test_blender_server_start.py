"""The add-on's non-blocking local server start (Generate with auto-start, the Start button): a real
`python -m motion_server serve` child is launched and polled from the UI's timer, each poll returning at
once, until it answers; a server that cannot start ends with its log and the fix."""

from __future__ import annotations

import sys
import time

import pytest
from motion_server_helpers import free_port

from blender_addon import server_link


@pytest.fixture(autouse=True)
def _stop_what_we_started():
    yield
    server_link.stop_local()


def _drive(start: server_link.LocalStart, limit_s: float = 120.0) -> tuple[int, float]:
    """Tick like the modal timer does; returns (ticks, longest tick in seconds)."""
    ticks, longest, t0 = 0, 0.0, time.monotonic()
    while True:
        t = time.monotonic()
        ready = start.tick()
        longest = max(longest, time.monotonic() - t)
        ticks += 1
        if ready:
            return ticks, longest
        assert time.monotonic() - t0 < limit_s, "the server never answered"
        time.sleep(0.1)


def test_local_start_polls_without_blocking_until_the_server_answers():
    address = f"tcp://127.0.0.1:{free_port()}"
    start = server_link.LocalStart(address, python=sys.executable, engine="energy")
    assert server_link.local_server_running()
    ticks, longest = _drive(start)
    assert ticks > 1, "a freshly launched server cannot answer at once: the first tick must not wait for it"
    assert longest < 1.0, f"a tick blocked the UI for {longest:.2f} s"
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
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        if _is_zombie(pid):
            return
        time.sleep(0.1)
    os.kill(pid, 9)
    pytest.fail("the local server kept running after the process that started it exited")


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1].startswith("Z")
    except OSError:
        return True
