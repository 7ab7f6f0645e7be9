"""CurveZMQ key pairs: create them, load them, apply them to a server socket."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import zmq
import zmq.auth


class CurveKeyError(ValueError):
    """A key file that cannot be used; the message names the fix."""


def create_keypair(outdir: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write NAME.key (public, give it to clients) and NAME.key_secret (keep private) into outdir.

    The secret file is created with mode 0600 (never briefly readable by others, whatever the umask)
    and exclusively (an existing key is never overwritten, not even by a race)."""
    if not zmq.has("curve"):
        raise CurveKeyError("this libzmq was built without CURVE support; install pyzmq from its wheels")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    pub, sec = out / f"{name}.key", out / f"{name}.key_secret"
    for p in (pub, sec):
        if p.exists():
            raise CurveKeyError(f"{p} already exists; refusing to overwrite a key (delete it or choose another dir)")
    public, secret = zmq.curve_keypair()
    _write_cert(sec, public, secret, 0o600)
    _write_cert(pub, public, None, 0o644)
    return pub, sec


def _write_cert(path: Path, public: bytes, secret: bytes | None, mode: int) -> None:
    """A certificate in the layout zmq.auth.load_certificate reads."""
    lines = ["#   ZeroMQ CURVE " + ("**Secret** Certificate (talkrig keygen): keep it private" if secret
                                   else "Public Certificate (talkrig keygen): give it to clients"),
             "", "metadata", "curve", f'    public-key = "{public.decode()}"']
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode()}"')
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CurveKeyError(f"{path} already exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def secret_file_warning(path: str | Path) -> str | None:
    """A warning when other users can read the secret key file (POSIX permissions), else None."""
    if os.name != "posix":
        return None
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (f"{path} is readable by other users (mode {stat.S_IMODE(mode):04o}): anyone who can read it can "
                f"impersonate this server to its clients; run `chmod 600 {path}`")
    return None


def load_secret(path: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a certificate written by ``talkrig keygen``."""
    p = Path(path)
    if not p.is_file():
        raise CurveKeyError(f"CURVE key file not found: {p} (create one with `talkrig keygen KEYDIR`)")
    try:
        pub, sec = zmq.auth.load_certificate(str(p))
    except Exception as e:
        raise CurveKeyError(f"cannot read CURVE key file {p}: {e}") from None
    if not sec:
        raise CurveKeyError(f"{p} holds only a public key; the server needs the *.key_secret file")
    return pub, sec


def apply_server_keys(sock: zmq.Socket, public: bytes, secret: bytes) -> None:
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
