"""Start a local motion server as a child process and wait until it answers (the add-on's Start button).

torch-free: it only launches ``PYTHON -m motion_server serve`` (a Python that has TalkRig and torch
installed, not necessarily Blender's) and talks to it with MotionClient.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from .client import DEFAULT_ADDRESS, MotionClient
from .protocol import ClientError, ServerUnavailable


class LocalServer:
    """A launched ``python -m motion_server serve`` child process, not yet known to answer.

    ``ready()`` checks once whether it answers (waiting at most ``probe_s``), so a UI can poll it from a
    timer without freezing; ``start_local_server`` waits on it in a loop.
    """

    def __init__(
        self,
        python: str = sys.executable,
        bind: str = DEFAULT_ADDRESS,
        engine: str | None = None,
        extra_args: Sequence[str] = (),
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        server_public_key: bytes | str | Path | None = None,
    ) -> None:
        if not Path(python).exists() and os.sep in python:
            raise ClientError(f"python interpreter not found: {python} (set the server Python path)")
        cmd = [python, "-m", "motion_server", "serve", "--bind", bind]
        if engine:
            cmd += ["--engine", engine]
        cmd += list(extra_args)
        if log_path is None:
            safe = "".join(c if c.isalnum() else "_" for c in bind)[-60:]
            log_path = Path(tempfile.gettempdir()) / f"talkrig-server-{safe}.log"
        self.bind = bind
        self.log_path = Path(log_path)
        self.server_public_key = server_public_key
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        except OSError as e:
            raise ClientError(f"cannot start the motion server ({' '.join(cmd)}): {e}") from None
        finally:
            log_file.close()
        self.proc.log_path = self.log_path  # type: ignore[attr-defined]
        self._other: int | None = None  # pid of a server that answers at this address but is not ours

    def ready(self, probe_s: float = 1.0) -> bool:
        """True once our server answers. Raises ClientError (with the log's last lines) if it exited."""
        code = self.proc.poll()
        if code is not None:
            if self._other is not None:
                raise ClientError(f"another motion server (pid {self._other}) already answers at {self.bind}; "
                                  "use it, stop it first, or pick another address")
            raise ClientError(f"the motion server exited with code {code} before answering:\n{_tail(self.log_path)}")
        with MotionClient(connect_address(self.bind), timeout_s=probe_s, retries=1,
                          server_public_key=self.server_public_key) as probe:
            try:
                pid = probe.status().get("pid")
            except ServerUnavailable:
                return False
        if pid == self.proc.pid:
            return True
        if pid is not None:  # someone else's server; ours fails to bind once its engine has loaded
            self._other = pid
        return False

    def stop(self) -> None:
        _stop(self.proc)

    def failed_to_answer(self, wait_s: float) -> ClientError:
        return ClientError(f"the motion server did not answer within {wait_s:g} s:\n{_tail(self.log_path)}")


def start_local_server(
    python: str = sys.executable,
    bind: str = DEFAULT_ADDRESS,
    engine: str | None = None,
    extra_args: Sequence[str] = (),
    wait_s: float = 120.0,
    log_path: str | Path | None = None,
    env: dict[str, str] | None = None,
    server_public_key: bytes | str | Path | None = None,
) -> subprocess.Popen:
    """Launch ``python -m motion_server serve --bind BIND ...``; return once hello succeeds.

    The server's log goes to ``log_path`` (default: a file in the temp dir; ``proc.log_path`` says
    where), never to a pipe nobody reads. Raises ClientError with the log's last lines when the server
    exits or does not answer within ``wait_s`` (then it is stopped). For a CURVE server pass its
    public key (and ``--curve-secret FILE`` in extra_args). Non-blocking alternative: ``LocalServer``.
    """
    server = LocalServer(python, bind, engine, extra_args, log_path, env, server_public_key)
    deadline = time.monotonic() + wait_s
    while not server.ready(probe_s=1.0):
        if time.monotonic() > deadline:
            server.stop()
            raise server.failed_to_answer(wait_s)
        if server._other is not None:
            time.sleep(0.2)
    return server.proc


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def connect_address(bind: str) -> str:
    """Where a client on this machine reaches a server bound to ``bind`` (wildcards -> loopback)."""
    for wild in ("tcp://0.0.0.0:", "tcp://*:"):
        if bind.startswith(wild):
            return "tcp://127.0.0.1:" + bind[len(wild):]
    return bind
