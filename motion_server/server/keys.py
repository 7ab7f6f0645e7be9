"""CurveZMQ key pairs: create them, load them, apply them to a server socket."""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth


class CurveKeyError(ValueError):
    """A key file that cannot be used; the message names the fix."""


def create_keypair(outdir: str | Path, name: str = "server") -> tuple[Path, Path]:
    """Write NAME.key (public, give it to clients) and NAME.key_secret (keep private) into outdir."""
    if not zmq.has("curve"):
        raise CurveKeyError("this libzmq was built without CURVE support; install pyzmq from its wheels")
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    pub, sec = out / f"{name}.key", out / f"{name}.key_secret"
    for p in (pub, sec):
        if p.exists():
            raise CurveKeyError(f"{p} already exists; refusing to overwrite a key (delete it or choose another dir)")
    pub_s, sec_s = zmq.auth.create_certificates(str(out), name)
    Path(sec_s).chmod(0o600)
    return Path(pub_s), Path(sec_s)


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
