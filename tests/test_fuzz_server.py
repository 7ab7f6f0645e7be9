"""10,000 hostile or broken messages, sent as fast as possible: the server answers each with a structured
error (or handles it), never crashes, and still serves a real request afterwards."""

from __future__ import annotations

import collections
import random
import time

import msgpack
import pytest
import zmq
from motion_server_helpers import ServerProcess, speech_like_wav

from motion_server import protocol as P
from motion_server.client import MotionClient

pytestmark = pytest.mark.timeout(300)

N_MESSAGES = 10_000
N_SOCKETS = 4
TYPES = [*P.REQUEST_FIELDS, "result", "progress", "", "x" * 100]


def _rand_scalar(r: random.Random):
    return r.choice([
        None, True, False, r.randint(-(2**63), 2**64 - 1), r.random() * 10 ** r.randint(-5, 300),
        float("nan"), float("inf"), -0.0, "", "é" * r.randint(0, 50), r.randbytes(r.randint(0, 40)),
        r.randint(-3, 3),
    ])  # fmt: skip


def _rand_obj(r: random.Random, depth: int = 0):
    k = r.random()
    if depth > 3 or k < 0.5:
        return _rand_scalar(r)
    if k < 0.75:
        return [_rand_obj(r, depth + 1) for _ in range(r.randint(0, 5))]
    return {r.choice(["v", "id", "type", "job", "audio", "frame", "dtype", "shape", "options", "seed", "x"]):
            _rand_obj(r, depth + 1) for _ in range(r.randint(0, 5))}


def _rand_array_ref(r: random.Random) -> dict:
    return {"dtype": r.choice([*P.WIRE_DTYPES, "<c16", "O", "", 5]),
            "shape": r.choice([[r.randint(0, 100), 52], [1 << 40], [-1], [2, 2, 2, 2, 2], "52", [True]]),
            "frame": r.choice([0, 1, 2, 99, -1, "0", None])}


def _valid_looking(r: random.Random) -> list[bytes]:
    """A right-looking envelope with fields of the wrong type, size or name."""
    t = "generate" if r.random() < 0.4 else r.choice(TYPES)
    v = 1 if r.random() < 0.85 else r.choice([0, 2, "1", None, 1.0])
    rid = f"f{r.randint(0, 10**6)}" if r.random() < 0.85 else r.choice(["", "x" * 70, 3, None])
    h: dict = {"v": v, "type": t, "id": rid}
    payload = [r.randbytes(r.randint(0, 300)) for _ in range(r.randint(0, 3))]
    if t != "generate":
        schema = P.REQUEST_FIELDS.get(t, {})
        names = sorted(schema) + ["bogus", "jobz"]
        for name in r.sample(names, k=r.randint(0, min(3, len(names)))):
            h[name] = _rand_obj(r)
    else:
        h["audio"] = {"frame": 0}
        payload = [r.randbytes(r.randint(1, 300))]  # never decodable audio: jobs end in bad_audio
        c = r.random()
        if c < 0.2:
            h["audio"] = {"frame": r.choice([1, 5, -1, "a", None])}
        elif c < 0.3:
            payload.append(b"unreferenced")
        elif c < 0.5:
            h["style_reference"] = {"fps": r.choice([30, -1, "x"]), "weights": _rand_array_ref(r),
                                    "head": _rand_array_ref(r), "meta": _rand_obj(r)}
            payload += [r.randbytes(r.choice([0, 52 * 4, 6 * 4, 1000])) for _ in range(2)]
        elif c < 0.75:
            h["options"] = {r.choice([*P.OPTION_TYPES, "nope"]): _rand_obj(r) for _ in range(r.randint(1, 4))}
        elif c < 0.85:
            h[r.choice(["audio_path", "progress", "heartbeat_s", "bogus"])] = _rand_obj(r)
        # else: a well-formed job with garbage audio
    h.pop("audio_path", None)  # never make the server read its own files
    frames = [b""] if r.random() < 0.7 else []
    try:
        frames.append(msgpack.packb(h, use_bin_type=True))
    except (OverflowError, ValueError):
        frames.append(b"\x80")
    return frames + payload


def _fuzz_message(r: random.Random) -> list[bytes]:
    k = r.random()
    if k < 0.2:  # random bytes, one or many frames
        return [r.randbytes(r.randint(0, 200)) for _ in range(r.randint(1, 12))]
    if k < 0.4:  # random msgpack, maybe a map
        try:
            return [b"", msgpack.packb(_rand_obj(r), use_bin_type=True)]
        except (OverflowError, ValueError):
            return [b"", b"\xc1"]
    if k < 0.45:  # truncated / corrupted valid header
        good = P.pack_header({"v": 1, "type": "status", "id": "t"})
        cut = bytearray(good[: r.randint(0, len(good))])
        if cut and r.random() < 0.5:
            cut[r.randrange(len(cut))] ^= 0xFF
        return [b"", bytes(cut)]
    return _valid_looking(r)


def _is_valid_shutdown(frames: list[bytes]) -> bool:
    try:
        _, body = P.split_frames(frames)
        msg = P.decode_message(body)
        P.validate_request(msg.header)
    except P.ProtocolError:
        return False
    return msg.type == "shutdown"


def test_server_survives_10000_fuzzed_messages(tmp_path) -> None:
    s = ServerProcess(tmp_path, engine="energy", extra=["--max-queue", "8", "--max-client-jobs", "2"])
    ctx = zmq.Context.instance()
    socks = []
    for _ in range(N_SOCKETS):
        d = ctx.socket(zmq.DEALER)
        d.linger = 0
        d.sndhwm = d.rcvhwm = 0
        d.connect(s.address)
        socks.append(d)
    r = random.Random(20261120)
    replies: list[list[bytes]] = []

    def drain() -> None:
        for d in socks:
            while d.poll(0):
                replies.append(d.recv_multipart())

    def sync(tag: str) -> bool:
        """Ping on every socket and wait for each answer: a connection's messages are answered in order, so
        once its ping comes back everything sent on it before has been answered. True if the server was
        idle (nothing queued or running) when it answered the last one."""
        for d in socks:
            d.send_multipart([b"", P.pack_header({"v": 1, "type": "ping", "id": tag})])
        idle = True
        deadline = time.monotonic() + 120
        for d in socks:
            while True:
                left = deadline - time.monotonic()
                assert left > 0 and d.poll(int(left * 1000)), f"no answer to the sync ping:\n{s.log()[-3000:]}"
                fr = d.recv_multipart()
                h = P.unpack_header(P.split_frames(fr)[1][0])
                if h.get("id") == tag and h["type"] == "ping":
                    idle = h["queue_length"] == 0 and not h["busy"]
                    break
                replies.append(fr)
        return idle

    try:
        sent = 0
        while sent < N_MESSAGES:
            msg = _fuzz_message(r)
            if _is_valid_shutdown(msg):
                continue
            socks[sent % N_SOCKETS].send_multipart(msg)
            sent += 1
            if sent % 500 == 0:
                drain()
        # every message has had its answer; the queued fuzz jobs (an error each) end while we ping on
        rounds = 0
        while not sync(f"sync-{rounds}"):
            rounds += 1
            assert rounds < 10_000, "the server never went idle"
        sync("sync-last")  # their final events, sent before this round's answers
        assert s.proc.poll() is None, f"the server died:\n{s.log()[-3000:]}"
        assert len(replies) >= sent, f"{sent} messages sent, only {len(replies)} answers"
        errors = 0
        headers = []
        for fr in replies:
            _, body = P.split_frames(fr)
            h = P.unpack_header(body[0])  # every answer is a protocol message
            headers.append(h)
            assert h["v"] == P.PROTOCOL_VERSION and isinstance(h["type"], str)
            if h["id"] is not None:  # nil only when the request had no usable id
                P.check_envelope(h)
            else:
                assert h["type"] == "error"
            if h["type"] == "error":
                errors += 1
                assert h["code"] in P.ErrorCode.ALL
                assert h["code"] != P.ErrorCode.INTERNAL, h["message"]
        kinds = collections.Counter(h.get("code", h["type"]) for h in headers)
        # the fuzz reached deep paths, not just the msgpack parser
        for code in ("bad_header", "bad_type", "unknown_field", "unknown_type", "bad_frame", "bad_value", "busy"):
            assert kinds[code] > 0, kinds
        assert errors > 0.9 * sent
        with MotionClient(s.address, timeout_s=10) as c:
            assert c.generate(speech_like_wav(2.0), {"seed": 1}).n_frames == 60
            st = c.status()
            assert st["queue_length"] == 0 and st["running"] is None
        assert "Traceback" not in s.log()
    finally:
        for d in socks:
            d.close(0)
        s.close()
