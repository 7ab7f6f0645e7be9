"""Every memory attack of the hardening issue against one real server process: its peak resident memory
(VmHWM, reset before each attack) stays under 1 GB, and it still serves a normal client afterwards.
The server runs with its address space capped at 4 GiB, so a regression fails the test instead of
taking the machine down. Each attack's peak is printed (pytest -s) for the closing note."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import zmq
from motion_server_helpers import SLOW_PACED, ServerProcess, server_env, speech_like_wav
from waiting import wait_running

from motion_server import protocol as P
from motion_server.client import MotionClient
from motion_server.client_process import start_local_server

pytestmark = [pytest.mark.timeout(600), pytest.mark.skipif(not sys.platform.startswith("linux"),
                                                           reason="reads /proc/PID/status")]
LIMIT_MB = 1024
MiB = 1 << 20


class LimitedServer(ServerProcess):
    """ServerProcess started through a shell that caps its address space (ulimit -v) first."""

    wrapper: Path

    def start(self, wait_s: float = 60.0) -> None:
        self.proc = start_local_server(str(self.wrapper), bind=self.bind, engine=self.engine, extra_args=self.extra,
                                       wait_s=wait_s, log_path=self.log_path, env=server_env())

    def status_kb(self, field: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise KeyError(field)

    def reset_peak(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := current RSS

    def peak_mb(self) -> float:
        return self.status_kb("VmHWM") / 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mem")
    wrapper = tmp / "python-capped"
    wrapper.write_text(f'#!/bin/sh\nulimit -v {4 << 20}\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    LimitedServer.wrapper = wrapper
    s = LimitedServer(tmp, engine=SLOW_PACED)  # default limits: 64 MB messages, 600 s audio
    yield s
    s.close()


PEAKS: dict[str, float] = {}


def _zmtp(address: str) -> socket.socket:
    """A raw ZMTP 3.0 peer (NULL security, DEALER): it can send what libzmq itself never would, such as
    a multipart message that never ends."""
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\0") + b"\x00" + b"\0" * 31)
    body = b"\x05READY" + bytes([11]) + b"Socket-Type" + struct.pack(">I", 6) + b"DEALER"
    s.sendall(bytes([0x04, len(body)]) + body)
    got = b""
    while b"READY" not in got[64:]:  # data before the server's READY would be read as a handshake command
        chunk = s.recv(4096)
        assert chunk, "the server closed the connection during the handshake"
        got += chunk
    return s


def _frame_header(n: int, more: bool) -> bytes:
    if n < 256:  # ZMTP short frame: one size byte
        return bytes([0x01 if more else 0, n])
    return bytes([(0x01 if more else 0) | 0x02]) + struct.pack(">Q", n)


def _stream(sock: socket.socket, total: int, frame: int, end: bool = False) -> int:
    """Send ``total`` bytes as frames of ``frame`` bytes with MORE set; returns bytes sent before the
    server hung up."""
    chunk = b"\0" * frame
    sent = 0
    try:
        while sent < total:
            more = not (end and sent + frame >= total)
            sock.sendall(_frame_header(frame, more) + chunk)
            sent += frame
    except OSError:
        pass
    return sent


def _check(server: LimitedServer, name: str) -> None:
    assert server.proc.poll() is None, f"the server died during {name}:\n{server.log()[-3000:]}"
    peak = server.peak_mb()
    PEAKS[name] = peak
    print(f"\n[memory] {name}: peak server RSS {peak:.0f} MB")
    with MotionClient(server.address, timeout_s=20) as c:
        assert c.generate(speech_like_wav(1.0), {"steps": 1}).n_frames == 30, f"no service after {name}"
    assert peak < LIMIT_MB, f"{name}: peak server RSS {peak:.0f} MB"


def _generate(address: str, audio: bytes, timeout: float = 30.0, **fields) -> dict:
    with MotionClient(address, timeout_s=timeout) as c:
        d = c._open()
        rid = "m" + os.urandom(6).hex()
        d.send_multipart([b"", P.pack_header({"v": 1, "type": "generate", "id": rid, "audio": {"frame": 0},
                                              **fields}), audio], copy=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if d.poll(200):
                _, body = P.split_frames(d.recv_multipart())
                h = P.unpack_header(body[0])
                if h["type"] in ("result", "error", "cancelled"):
                    return h
        raise AssertionError("no terminal answer")


def _wav(rate: int, payload: bytes, data_len: int | None = None) -> bytes:
    n = len(payload) if data_len is None else data_len
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (rate * 2) & 0xFFFFFFFF, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", n) + payload


def test_decode_bombs(server, tmp_path) -> None:
    """Finding 2: 4 KB claiming 100 MHz (was > 3.5 GB), 20 KB at 1 Hz, 268 KB FLAC of silence, 2 MB
    Matroska (each was 1.2-1.4 GB)."""
    x = np.zeros(8000 * 3000, np.float32)
    b = io.BytesIO()
    sf.write(b, x, 8000, format="FLAC")
    flac = b.getvalue()
    attacks = [("wav 100 MHz header (4 KB)", _wav(100_000_000, b"\0" * 4000), "bad_audio"),
               ("wav 1 Hz header (20 KB)", _wav(1, b"\0" * 20000), "bad_audio"),
               (f"flac of silence ({len(flac) // 1024} KB, 3000 s)", flac, "audio_too_long")]
    if shutil.which("ffmpeg") is not None:
        mkv = tmp_path / "long.mkv"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "3000",
                        "-c:a", "flac", str(mkv)], check=True, timeout=120)
        attacks.append((f"matroska ({mkv.stat().st_size // 1024} KB, 3000 s)", mkv.read_bytes(), "audio_too_long"))
    for name, data, code in attacks:
        server.reset_peak()
        h = _generate(server.address, data)
        assert h["type"] == "error" and h["code"] == code, (name, h)
        _check(server, name)


def test_concat_script_at_a_fifo_does_not_block_the_worker(server, tmp_path) -> None:
    """Finding 4: a concat script naming a FIFO blocked the worker for good."""
    fifo = Path(os.environ.get("TMPDIR", "/tmp")) / f"talkrig-test-fifo-{os.getpid()}"
    os.mkfifo(fifo)
    try:
        server.reset_peak()
        for script in (f"ffconcat version 1.0\nfile {fifo.name}\n", f"ffconcat version 1.0\nfile {fifo}\n"):
            h = _generate(server.address, script.encode())  # a blocked worker would never answer this
            assert h["code"] == "bad_audio", h
        _check(server, "concat script naming a FIFO")
    finally:
        fifo.unlink()


def test_tiny_fps_style_reference(server) -> None:
    """Finding 3: 600 bytes of style reference at fps 2e-6 were resampled before being cut (> 3.5 GB)."""
    server.reset_peak()
    ref = {"fps": 2e-6, "weights": {"dtype": "<f4", "shape": [2, 52], "frame": 1},
           "head": {"dtype": "<f4", "shape": [2, 6], "frame": 2}, "meta": {}}
    with MotionClient(server.address, timeout_s=10) as c:
        d = c._open()
        d.send_multipart([b"", P.pack_header({"v": 1, "type": "generate", "id": "tiny", "audio": {"frame": 0},
                                              "style_reference": ref}),
                          speech_like_wav(1.0), np.zeros((2, 52), "<f4").tobytes(), np.zeros((2, 6), "<f4").tobytes()])
        assert d.poll(10_000)
        h = P.unpack_header(P.split_frames(d.recv_multipart())[1][0])
    assert h["code"] == "bad_value"
    _check(server, "style reference at 2e-6 fps")


def test_unfinished_multipart_message(server) -> None:
    """Finding 7: a client that never finishes a multipart message grew the server by 2 GB."""
    server.reset_peak()
    sock = _zmtp(server.address)
    sent = _stream(sock, 2048 * MiB, 256 * 1024)
    sock.close()
    print(f"\n[memory] unfinished multipart: {sent / MiB:.0f} MB sent before the server hung up")
    assert "memory guard" in server.log()
    _check(server, "unfinished multipart message (2 GB offered)")


def test_oversized_and_many_frame_messages(server) -> None:
    """Finding 7: a 7 x 100 MiB message was buffered whole; now a frame over the limit ends the
    connection before it is buffered, and several 7 x 60 MiB messages at once trip the guard."""
    server.reset_peak()
    sock = _zmtp(server.address)
    sent = _stream(sock, 700 * MiB, 100 * MiB, end=True)
    sock.close()
    assert sent < 700 * MiB
    _check(server, "7 x 100 MiB message")
    server.reset_peak()
    socks = [_zmtp(server.address) for _ in range(3)]
    hdr = P.pack_header({"v": 1, "type": "ping", "id": "big"})
    for s in socks:
        try:
            s.sendall(_frame_header(len(hdr), True) + hdr)
        except OSError:
            pass
    import threading

    sent: list[int] = []
    threads = [threading.Thread(target=lambda s=s: sent.append(_stream(s, 7 * 60 * MiB, 60 * MiB, True)))
               for s in socks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for s in socks:
        s.close()
    print(f"\n[memory] 3 x 7 x 60 MiB: {sum(sent) / MiB:.0f} MB sent before the server hung up or answered")
    _check(server, "3 connections x 7 x 60 MiB messages")


def test_queue_flood(server) -> None:
    """Finding 7: one client could queue 64 x 60 MiB jobs (4.5 GB). Per-client and total byte quotas
    answer busy; the worker is kept busy so the uploads really would queue."""
    server.reset_peak()
    with MotionClient(server.address, timeout_s=300, heartbeat_s=100) as holder:  # not polled while flooding
        blocker = holder.submit(speech_like_wav(1.0), {"steps": 50})  # ~30 s unless cancelled
        wait_running(blocker)
        blob = b"RIFF" + b"\0" * (60 * MiB - 4)
        answers: list[str] = []
        ctx = zmq.Context.instance()
        for client in range(4):
            d = ctx.socket(zmq.DEALER)
            d.linger = 0
            d.routing_id = b"flood%d" % client
            d.connect(server.address)
            for j in range(8):
                # distinct requests (the seed differs per client): identical ones would be one job
                d.send_multipart([b"", P.pack_header({"v": 1, "type": "generate", "id": f"f{j}", "audio": {"frame": 0},
                                                      "options": {"seed": client}}), blob], copy=False)
                assert d.poll(30_000)
                answers.append(P.unpack_header(P.split_frames(d.recv_multipart())[1][0]).get("code", "accepted"))
            d.close(0)
        blocker.cancel()
    accepted, busy = answers.count("accepted"), answers.count("busy")
    print(f"\n[memory] queue flood: 32 x 60 MiB offered by 4 clients: {accepted} accepted, {busy} busy")
    assert accepted <= 4 and busy >= 28
    _check(server, "queue flood 4 clients x 8 x 60 MiB")


def test_zz_report(server, tmp_path_factory) -> None:
    out = Path(os.environ.get("TALKRIG_MEMORY_REPORT", tmp_path_factory.mktemp("report") / "memory.json"))
    out.write_text(json.dumps(PEAKS, indent=1))
    print("\n[memory] " + json.dumps(PEAKS))
