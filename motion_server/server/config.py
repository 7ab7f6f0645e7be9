"""Server settings and the bind policy (loopback/ipc freely; anything else only with CurveZMQ keys)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BIND = "tcp://127.0.0.1:5557"


class BindRefused(ValueError):
    """A bind address the server will not use; the message names the fix."""


@dataclass
class ServerConfig:
    binds: list[str] = field(default_factory=lambda: [DEFAULT_BIND])
    curve_secret: Path | None = None  # a zmq certificate file holding the server's secret key
    max_message_mb: float = 64.0  # per incoming message (zmq MAXMSGSIZE + own check)
    max_audio_seconds: float = 600.0
    max_queue: int = 64  # queued jobs; each holds its audio bytes in memory
    sample_rate: int = 16000  # what engines receive
    heartbeat_s: float = 1.0  # how often clients are asked to ping while they wait
    orphan_grace: float = 3.0  # a job owner silent for orphan_grace * its heartbeat_s (+1 s) is gone
    shutdown_grace_s: float = 10.0  # how long a running job may take to stop on shutdown
    progress_interval_s: float = 0.05  # at most ~20 progress events per second per job

    @property
    def max_message_bytes(self) -> int:
        return int(self.max_message_mb * (1 << 20))


def is_local_address(addr: str) -> bool:
    """True for ipc:// and inproc:// and for tcp:// on a loopback host."""
    scheme, _, rest = addr.partition("://")
    if scheme in ("ipc", "inproc"):
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


def is_local_peer(peer: str | None) -> bool:
    """zmq's Peer-Address of a message: an IP for tcp, something else (e.g. 'localhost:...') for ipc."""
    if not peer:
        return False
    host = peer.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.startswith("localhost")


def check_binds(binds: list[str], curve: bool) -> None:
    for b in binds:
        scheme = b.partition("://")[0]
        if scheme not in ("tcp", "ipc", "inproc"):
            raise BindRefused(f"cannot bind {b!r}: use tcp://HOST:PORT or ipc:///path/to/socket")
        if not is_local_address(b) and not curve:
            raise BindRefused(
                f"refusing to bind {b} without encryption: it is reachable from other machines. "
                "Bind tcp://127.0.0.1:PORT (or ipc://), or create keys with `talkrig keygen KEYDIR` "
                "and start with --curve-secret KEYDIR/server.key_secret (clients then need KEYDIR/server.key)"
            )
