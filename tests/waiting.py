"""Waiting in tests without sleeping as synchronisation: every wait has a deadline and fails naming what it
waited for. Prefer an event (a subprocess's wait(timeout=...), a threading.Event, a pipe line): use
``pump_until`` where a motion server's answers are the event, and ``wait_until`` only for conditions that
announce nothing (a file growing, a process that is not our child disappearing from /proc)."""

from __future__ import annotations

import contextlib
import fcntl
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

RAY_LOCK_S = 1200.0  # how long a test waits for another test file to finish with its Ray cluster


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``timeout`` s
    saying what never happened. For conditions with no event to wait on."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)  # polling cadence of a condition that has no event; the loop ends on the predicate


def pump_until(client: Any, predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Drive a MotionClient's event stream (blocking on its socket for the server's next message, with
    the heartbeats and timeouts a real wait runs) until ``predicate`` holds; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        client._pump(min(left, 0.1))  # returns as soon as a message arrives
        client._tick()


def wait_running(job: Any, timeout: float = 30.0) -> None:
    """Until the server reports ``job`` running (its first progress event); fail if it ends first."""
    pump_until(job._client, lambda: job.state == "running" or job.done, timeout, f"job {job.id} to start")
    assert job.state == "running", f"job {job.id} ended {job.state} ({job.error}) before it was seen running"


def returns_within(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Call ``fn`` in a thread and return its result (or raise its exception); fail, naming ``what``, if it
    has not returned after ``timeout`` s. A hang guard for blocking calls that take no timeout themselves,
    not a speed limit: choose a timeout far beyond what the call should take."""
    import threading

    box: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True, name=f"returns_within: {what}").start()
    if not finished.wait(timeout):
        pytest.fail(f"{what} had not returned after {timeout:g} s (it hangs)")
    if "error" in box:
        raise box["error"]
    return box["value"]


@contextlib.contextmanager
def machine_lock(name: str, timeout: float, what: str) -> Iterator[None]:
    """Hold a lock every test process on this machine shares (pytest-xdist runs test files side by side).
    For resources that are machine-wide by design: `--ray auto` joins whichever Ray cluster is running
    here, so two tests that each bring their own cluster must take turns."""
    path = Path(tempfile.gettempdir()) / f"talkrig-tests-{name}.lock"
    with open(path, "a+") as handle:
        def acquired() -> bool:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_until(acquired, timeout, what, interval=0.1)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
