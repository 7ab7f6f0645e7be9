"""Server settings and the bind policy (loopback/ipc freely; anything else only with CurveZMQ keys)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from motion_server.options import SAMPLE_RATE

from ..client import DEFAULT_ADDRESS

DEFAULT_BIND = DEFAULT_ADDRESS  # the address clients try by default


class BindRefused(ValueError):
    """A bind address the server will not use; the message names the fix."""


@dataclass
class ServerConfig:
    binds: list[str] = field(default_factory=lambda: [DEFAULT_BIND])
    curve_secret: Path | None = None  # a zmq certificate file holding the server's secret key
    max_message_mb: float = 64.0  # per incoming message (zmq MAXMSGSIZE + own check)
    max_audio_seconds: float = 600.0
    max_queue: int = 64  # queued jobs; each holds its audio bytes in memory
    max_queued_mb: float = 256.0  # audio bytes held by all queued jobs together
    max_client_jobs: int = 8  # queued + running jobs of one client (one socket identity)
    max_client_mb: float = 128.0  # audio bytes queued by one client
    # RSS above which every connection is dropped (frees what libzmq buffers for messages that never
    # complete); 0 = the RSS after start-up + 640 MB. Jobs survive: clients reconnect by themselves.
    max_memory_mb: float = 0.0
    shared_jobs: bool = False  # every client may see and cancel every job (one trusted user)
    decode_timeout_s: float = 120.0  # wall-clock limit for decoding one job's audio
    sample_rate: int = SAMPLE_RATE  # what engines receive
    heartbeat_s: float = 1.0  # how often clients are asked to ping while they wait
    orphan_grace: float = 3.0  # a job owner silent for orphan_grace * its heartbeat_s (+1 s) is gone
    shutdown_grace_s: float = 10.0  # how long a running job may take to stop on shutdown
    progress_interval_s: float = 0.05  # at most ~20 progress events per second per job
    # engines that batch (diffusion): most windows (3 s of one job each) per shared denoiser forward,
    # 0 = the engine's default (32 on a CPU, the checkpoint's window.max_batch on a GPU); and most jobs
    # admitted at once (each holds its audio's features and noisy motion while it is sampled, so this
    # bounds memory together with --max-audio-seconds)
    max_batch: int = 0
    max_running: int = 8

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * (1 << 20))

    @property
    def max_queued_bytes(self) -> int:
        return int(self.max_queued_mb * (1 << 20))

    @property
    def max_client_bytes(self) -> int:
        return int(self.max_client_mb * (1 << 20))


def is_local_address(addr: str) -> bool:
    """True for ipc:// paths, inproc:// and tcp:// on a loopback host.

    An abstract unix socket (``ipc://@name``) is not local: it has no file, so no permissions, and any
    process on the machine (any user, any container sharing the network namespace) can connect."""
    scheme, _, rest = addr.partition("://")
    if scheme == "ipc":
        return bool(rest) and not rest.startswith("@")
    if scheme == "inproc":
        return True
    if scheme != "tcp" or not rest:
        return False
    host = rest.rsplit(":", 1)[0] if ":" in rest else rest
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", interface names, DNS names: not provably loopback


def is_local_peer(peer: str | None, ipc_local: bool = True) -> bool:
    """zmq's Peer-Address of a message: an IP for tcp, 'localhost:...' for ipc. zmq reports abstract and
    path ipc peers alike, so ``ipc_local`` is False when the server also listens on an abstract socket."""
    if not peer:
        return False
    host = peer.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return ipc_local and host.startswith("localhost")


def check_binds(binds: list[str], curve: bool) -> None:
    for b in binds:
        scheme = b.partition("://")[0]
        if scheme not in ("tcp", "ipc", "inproc"):
            raise BindRefused(f"cannot bind {b!r}: use tcp://HOST:PORT or ipc:///path/to/socket")
        if b.startswith("ipc://@") and not curve:
            raise BindRefused(
                f"refusing to bind {b} without encryption: an abstract socket has no file permissions, so "
                "every process on this machine could connect. Bind ipc:///path/to/socket (protected by its "
                "folder's permissions) or tcp://127.0.0.1:PORT, or use keys (`talkrig keygen KEYDIR`, "
                "--curve-secret KEYDIR/server.key_secret)"
            )
        if not is_local_address(b) and not curve:
            raise BindRefused(
                f"refusing to bind {b} without encryption: it is reachable from other machines. "
                "Bind tcp://127.0.0.1:PORT (or ipc://), or create keys with `talkrig keygen KEYDIR` "
                "and start with --curve-secret KEYDIR/server.key_secret (clients then need KEYDIR/server.key)"
            )
