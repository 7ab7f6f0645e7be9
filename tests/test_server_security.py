"""Network exposure: CurveZMQ keys are required off loopback, and without the server key nothing talks."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import zmq
from motion_server_helpers import ServerProcess, free_port, server_env, speech_like_wav

from motion_server import protocol as P
from motion_server.client import MotionClient, load_server_key
from motion_server.protocol import ServerError, ServerUnavailable

pytestmark = pytest.mark.timeout(300)


def _non_loopback_ip() -> str | None:
    """This machine's outbound address (no packet is sent), or None without a network interface."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def _keygen(outdir) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "motion_server", "keygen", str(outdir)], capture_output=True,
                          text=True, timeout=60, env=server_env())


def test_curve_server_talks_only_to_clients_with_its_key(tmp_path) -> None:
    keys = tmp_path / "keys"
    p = _keygen(keys)
    assert p.returncode == 0, p.stderr
    assert (keys / "server.key").is_file() and (keys / "server.key_secret").is_file()
    assert (keys / "server.key_secret").stat().st_mode & 0o077 == 0, "the secret key must not be world-readable"
    again = _keygen(keys)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr

    server_key = load_server_key(keys / "server.key")
    port = free_port()
    s = ServerProcess(tmp_path, engine="energy", bind=f"tcp://0.0.0.0:{port}",
                      extra=["--curve-secret", str(keys / "server.key_secret")], server_public_key=server_key)
    try:
        assert "CurveZMQ encrypted" in s.log()
        with MotionClient(s.address, timeout_s=1.5, retries=1) as stranger, pytest.raises(ServerUnavailable):
            stranger.hello()
        # a plain socket gets nothing back either, not even an error
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.linger = 0
        raw.connect(s.address)
        raw.send_multipart([b"", P.pack_header({"v": 1, "type": "ping", "id": "x"})])
        assert raw.poll(1000) == 0
        raw.close(0)
        wrong_key = zmq.curve_keypair()[0]
        with MotionClient(s.address, timeout_s=1.5, retries=1, server_public_key=wrong_key) as imposter:
            with pytest.raises(ServerUnavailable):
                imposter.ping()
        with MotionClient(s.address, timeout_s=10, server_public_key=keys / "server.key") as friend:
            assert friend.generate(speech_like_wav(1.0), {"seed": 2}).n_frames == 30
        ip = _non_loopback_ip()
        if ip is not None:  # from a non-loopback peer: serving yes, shutting the server down no
            with MotionClient(f"tcp://{ip}:{port}", timeout_s=10, server_public_key=server_key) as remote:
                assert remote.generate(speech_like_wav(0.5)).n_frames == 15
                st = remote.status()  # this machine's details are not a remote peer's business
                assert "pid" not in st and "endpoints" not in st
                with pytest.raises(ServerError) as e:
                    remote.shutdown()
                assert e.value.code == "forbidden"
        with MotionClient(s.address, timeout_s=10, server_public_key=server_key) as local:
            assert local.shutdown()["mode"] == "cancel"
        assert s.proc.wait(15) == 0
    finally:
        s.close()


def test_non_loopback_bind_refused_without_keys_on_real_interface() -> None:
    ip = _non_loopback_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    p = subprocess.run([sys.executable, "-m", "motion_server", "serve", "--engine", "energy", "--bind",
                        f"tcp://{ip}:{free_port()}"], capture_output=True, text=True, timeout=60, env=server_env())
    assert p.returncode == 2 and "refusing to bind" in p.stderr and "--curve-secret" in p.stderr


def test_missing_secret_file_is_a_clear_error(tmp_path) -> None:
    p = subprocess.run([sys.executable, "-m", "motion_server", "serve", "--engine", "energy", "--bind",
                        f"tcp://0.0.0.0:{free_port()}", "--curve-secret", str(tmp_path / "nope.key_secret")],
                       capture_output=True, text=True, timeout=60, env=server_env())
    assert p.returncode == 2 and "not found" in p.stderr and "talkrig keygen" in p.stderr
