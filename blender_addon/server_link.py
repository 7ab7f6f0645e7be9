"""The add-on's connection to the motion server: one client, an optional local server process, the
job in flight. Never touches bpy data (operators do), so it is safe to use from timers and modals."""

from __future__ import annotations

import atexit
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from motion_server import client as motion_client
from motion_server import client_process

DEFAULT_ADDRESS: str = motion_client.DEFAULT_ADDRESS  # one default address, the client's
# How often the add-on promises to ping while a job runs. The server cancels a job whose client is
# silent for ~3 x this + 1 s; Blender's timers stall while the UI is busy (a render, a long operator),
# so allow ~16 s of stall instead of the client default's ~4 s.
HEARTBEAT_S = 5.0

_state: dict[str, Any] = {"client": None, "key": None, "proc": None, "launch": None, "job": None, "styles": []}


class ServerLinkError(RuntimeError):
    """The server cannot be reached or started; the message says what to do."""


def is_loopback(address: str) -> bool:
    host = urlparse(address).hostname or ""
    return address.startswith("ipc://") or host in ("127.0.0.1", "localhost", "::1")


def local_address_problem(address: str) -> str | None:
    """Why a local server cannot be started for ``address`` (it is not on this computer), or None."""
    if is_loopback(address):
        return None
    return (f"The server address {address} is not on this computer; a local server binds 127.0.0.1 (change "
            "Server address in the add-on preferences)")


def unreachable_message(address: str, public_key: str = "", detail: str | None = None) -> str:
    """What went wrong talking to the server and how to fix it. ``detail``: the client's own account
    (e.g. "... restarted while job ... was running"), which replaces the generic first sentence."""
    head = detail.rstrip(".") + "." if detail else f"No TalkRig motion server answers at {address}."
    if not is_loopback(address):
        fix = (f"Fix: check that the server runs at {address} and that the add-on preference 'Server public "
               "key' holds its server.key (from `talkrig keygen`)" + ("" if public_key else "; it is empty now") + ".")
    else:
        fix = ("Fix: press 'Start local server' in the TalkRig panel (set 'Server Python' in the add-on "
               f"preferences to a Python with TalkRig installed, e.g. .venv/bin/python), or run `talkrig serve "
               f"--bind {address}` in a terminal.")
        if not public_key:
            fix += (" A server started with --curve-secret also needs its server.key in the add-on preference "
                    "'Server public key'.")
    return f"{head} {fix}"


def client(address: str = DEFAULT_ADDRESS, timeout_s: float = 30.0, public_key: str = "") -> Any:
    """A MotionClient for ``address`` (reused while the settings are unchanged)."""
    key = (address, float(timeout_s), public_key or "")
    if _state["client"] is None or _state["key"] != key:
        close_client()
        _state["client"] = motion_client.MotionClient(address, timeout_s=timeout_s, heartbeat_s=HEARTBEAT_S,
                                                      server_public_key=public_key or None)
        _state["key"] = key
    return _state["client"]


def close_client() -> None:
    c = _state.get("client")
    if c is not None:
        try:
            c.close()
        except Exception:  # closing a broken socket must never block unregister
            pass
    _state["client"] = None
    _state["key"] = None


def check(address: str, public_key: str = "", timeout_s: float = 2.0) -> dict[str, Any]:
    """Server hello (name, engine...) or raise ServerLinkError with the fix. Also remembers the engine's
    style presets (``known_styles()``) for the panel's Preset field."""
    try:
        with motion_client.MotionClient(address, timeout_s=timeout_s, retries=1,
                                        server_public_key=public_key or None) as c:
            hello = c.hello()
            _state["styles"] = [str(n) for n in c.list().get("styles") or [] if isinstance(n, str)]
            return hello
    except motion_client.ServerUnavailable:
        raise ServerLinkError(unreachable_message(address, public_key)) from None
    except motion_client.ClientError as e:
        raise ServerLinkError(f"motion server at {address}: {e}") from None


def _adopt(proc: Any) -> None:
    """Remember the server process this session started; it is stopped when Blender exits (it runs
    detached, in its own session, so nothing else would end it)."""
    _state["proc"] = proc
    if not _state.get("atexit"):
        atexit.register(stop_local)
        _state["atexit"] = True


def known_styles() -> list[str]:
    """Style presets of the engine last seen by ``check()`` (empty before any server answered)."""
    return list(_state["styles"])


def local_server_running() -> bool:
    proc = _state.get("proc")
    return proc is not None and proc.poll() is None


_START_FIX = ("Fix: set 'Server Python' in the TalkRig preferences to a Python that has TalkRig installed "
              "(`python -m motion_server serve` must work with it)")


class LocalStart:
    """A local server being started without blocking: ``tick()`` from a timer or modal operator until it
    returns True (each call waits at most ``probe_s``). Raises ServerLinkError with the fix on failure."""

    def __init__(self, address: str, python: str = "", engine: str = "", wait_s: float = 120.0) -> None:
        problem = local_address_problem(address)
        if problem:
            raise ServerLinkError(problem)
        launched = _state.get("launch")
        if launched is not None and launched.proc is _state.get("proc") and launched.proc.poll() is None:
            self.server = launched  # already starting (Start button, then Generate): wait for that one
        else:
            try:
                self.server = client_process.LocalServer(python or _guess_python(), bind=address,
                                                                   engine=engine or None)
            except motion_client.ClientError as e:
                raise ServerLinkError(f"{e}\n{_START_FIX}") from None
        _adopt(self.server.proc)  # Stop / unregister / exit can end it while it is still loading
        _state["launch"] = self.server
        self.wait_s = wait_s
        self.deadline = time.monotonic() + wait_s

    def tick(self, probe_s: float = 0.02) -> bool:
        try:
            if self.server.ready(probe_s=probe_s):
                return True
        except motion_client.ClientError as e:
            _state["proc"] = None
            raise ServerLinkError(f"{e}\n{_START_FIX}") from None
        if time.monotonic() > self.deadline:
            self.server.stop()
            _state["proc"] = None
            raise ServerLinkError(f"{self.server.failed_to_answer(self.wait_s)}\n{_START_FIX}")
        return False


def start_local(address: str, python: str = "", engine: str = "", wait_s: float = 120.0) -> Any:
    """Start ``python -m motion_server serve`` bound to ``address`` and wait until it answers."""
    problem = local_address_problem(address)
    if problem:
        raise ServerLinkError(problem)
    if local_server_running():
        return _state["proc"]
    py = python or _guess_python()
    try:
        proc = client_process.start_local_server(py, bind=address, engine=engine or None, wait_s=wait_s)
    except motion_client.ClientError as e:
        raise ServerLinkError(f"{e}\n{_START_FIX}") from None
    _adopt(proc)
    return proc


def stop_local() -> bool:
    """Stop the server this session started; True if one was running."""
    proc = _state.get("proc")
    _state["proc"] = _state["launch"] = None
    if proc is None or proc.poll() is not None:
        return False
    proc.terminate()
    try:
        proc.wait(10)
    except Exception:
        proc.kill()
    return True


def _guess_python() -> str:
    """A repository checkout's venv next to this add-on, else the interpreter running us."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        cand = parent / ".venv" / "bin" / "python"
        if cand.is_file() and (parent / "motion_server").is_dir():
            return str(cand)
    return sys.executable


def set_job(job: Any) -> None:
    _state["job"] = job


def current_job() -> Any:
    return _state.get("job")


def shutdown() -> None:
    """On unregister: cancel the job in flight, close the socket, stop our local server."""
    job = _state.get("job")
    if job is not None and not job.done:
        try:
            job.cancel()
        except Exception:
            pass
    _state["job"] = None
    close_client()
    stop_local()
