"""Wire protocol units: arrays and FaceMotion round trip bit-exact; malformed input gets the right code."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import msgpack
import numpy as np
import pytest

from motion_server import protocol as P
from motion_server.engine.base import GenerateOptions
from motion_server.protocol import ErrorCode, ProtocolError
from rig_mapping import FaceMotion


def _roundtrip_array(a: np.ndarray) -> np.ndarray:
    frames: list = []
    ref = P.encode_array(a, frames)
    header = P.unpack_header(P.pack_header({"a": ref}))  # through msgpack, as on the wire
    return P.decode_array(header["a"], [bytes(f) for f in frames])


@pytest.mark.parametrize("dtype", sorted(P.WIRE_DTYPES))
def test_arrays_round_trip_bit_exact(dtype: str) -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=6 * 7 * np.dtype(dtype).itemsize, dtype=np.uint8)
    a = raw.view(dtype).reshape(6, 7)  # every bit pattern, NaN payloads and denormals included
    b = _roundtrip_array(a)
    assert b.shape == a.shape and b.dtype == np.dtype(dtype).newbyteorder("=")
    assert b.tobytes() == a.tobytes()


def test_big_endian_and_non_contiguous_arrays_arrive_as_values() -> None:
    a = np.arange(24, dtype=">f4").reshape(4, 6)[:, ::2]
    b = _roundtrip_array(a)
    assert np.array_equal(a, b) and b.dtype == np.float32


def test_empty_and_zero_dim_arrays() -> None:
    assert _roundtrip_array(np.zeros((0, 52), np.float32)).shape == (0, 52)
    assert _roundtrip_array(np.array(3.5, np.float64)).item() == 3.5


def test_unsupported_dtype_refused() -> None:
    with pytest.raises(ProtocolError) as e:
        P.encode_array(np.zeros(3, dtype=object), [])
    assert e.value.code == ErrorCode.BAD_TYPE


@pytest.mark.parametrize(
    "ref, frames, code",
    [
        ({"dtype": "<f4", "shape": [2, 2], "frame": 0}, [b"\0" * 15], ErrorCode.BAD_VALUE),  # size mismatch
        ({"dtype": "<f4", "shape": [2, 2], "frame": 1}, [b"\0" * 16], ErrorCode.BAD_FRAME),  # no such frame
        ({"dtype": "O", "shape": [1], "frame": 0}, [b"\0" * 8], ErrorCode.BAD_TYPE),
        ({"dtype": "<f4", "shape": [-1], "frame": 0}, [b""], ErrorCode.BAD_TYPE),
        ({"dtype": "<f4", "shape": "4", "frame": 0}, [b"\0" * 16], ErrorCode.BAD_TYPE),
        ({"dtype": "<f4", "shape": [True], "frame": 0}, [b"\0" * 4], ErrorCode.BAD_TYPE),
        ({"dtype": "<f4", "shape": [1 << 30, 1 << 30], "frame": 0}, [b""], ErrorCode.TOO_LARGE),
        ({"dtype": "<f4", "shape": [1], "frame": 0, "extra": 1}, [b"\0" * 4], ErrorCode.UNKNOWN_FIELD),
        ([1, 2, 3], [b""], ErrorCode.BAD_TYPE),
    ],
)
def test_bad_array_refs(ref, frames, code) -> None:
    with pytest.raises(ProtocolError) as e:
        P.decode_array(ref, frames)
    assert e.value.code == code


def _motion(n: int = 40, seed: int = 0) -> FaceMotion:
    rng = np.random.default_rng(seed)
    return FaceMotion.from_arrays(rng.random((n, 52)), rng.normal(0, 0.1, (n, 6)), fps=25.0,
                                  meta={"model": "x", "seed": seed, "nested": {"a": [1, 2.5, "s"]}})


def test_face_motion_round_trip_exact() -> None:
    m = _motion()
    msg = P.make("result", "r1", [], job="j1")
    msg.header["motion"] = P.encode_motion(m, msg.frames)
    wire = [bytes(f) for f in msg.to_frames()]
    _, body = P.split_frames(wire)
    got = P.decode_message(body)
    m2 = P.decode_motion(got.header["motion"], got.frames)
    assert m2 == m  # fps, weights, head bit-exact and meta equal


def test_face_motion_invalid_values_refused() -> None:
    frames: list = []
    enc = P.encode_motion(_motion(), frames)
    w = np.frombuffer(frames[0], np.float32).copy()
    w[5] = 7.0  # out of [0, 1]
    frames[0] = w.tobytes()
    with pytest.raises(ProtocolError) as e:
        P.decode_motion(enc, frames)
    assert e.value.code == ErrorCode.BAD_VALUE and "weights" in e.value.message


def _req(type_: str, **fields) -> dict:
    return {"v": P.PROTOCOL_VERSION, "type": type_, "id": "abc", **fields}


@pytest.mark.parametrize(
    "header, code",
    [
        (_req("frobnicate"), ErrorCode.UNKNOWN_TYPE),
        (_req("status", verbose=True), ErrorCode.UNKNOWN_FIELD),
        (_req("cancel"), ErrorCode.MISSING_FIELD),
        (_req("cancel", job=7), ErrorCode.BAD_TYPE),
        (_req("generate"), ErrorCode.MISSING_FIELD),
        (_req("generate", audio={"frame": 0}, audio_path="/x.wav"), ErrorCode.BAD_VALUE),
        (_req("generate", audio="bytes?"), ErrorCode.BAD_TYPE),
        (_req("generate", audio={"frame": 0}, options={"seed": "7"}), ErrorCode.BAD_TYPE),
        (_req("generate", audio={"frame": 0}, options={"seed": True}), ErrorCode.BAD_TYPE),
        (_req("generate", audio={"frame": 0}, options={"guidance": float("nan")}), ErrorCode.BAD_TYPE),
        (_req("generate", audio={"frame": 0}, options={"steps": 0}), ErrorCode.BAD_VALUE),
        (_req("generate", audio={"frame": 0}, options={"fps": 1000}), ErrorCode.BAD_VALUE),
        (_req("generate", audio={"frame": 0}, options={"colour": "red"}), ErrorCode.UNKNOWN_FIELD),
        (_req("generate", audio={"frame": 0}, options={"style_mix": ["happy", 2]}), ErrorCode.BAD_VALUE),
        (_req("generate", audio={"frame": 0}, options={"transcript": "x" * 200_000}), ErrorCode.TOO_LARGE),
        (_req("generate", audio={"frame": 0}, heartbeat_s=0), ErrorCode.BAD_VALUE),
        (_req("shutdown", mode="now"), ErrorCode.BAD_VALUE),
        (_req("hello", versions=["1"]), ErrorCode.BAD_TYPE),
        (_req("ping", jobs="j1"), ErrorCode.BAD_TYPE),
    ],
)
def test_request_validation_codes(header, code) -> None:
    with pytest.raises(ProtocolError) as e:
        P.check_envelope(header)
        P.validate_request(header)
    assert e.value.code == code, e.value.message


def test_valid_requests_pass() -> None:
    for h in (
        _req("hello", versions=[1], client="t"),
        _req("ping", jobs=["j1"]),
        _req("generate", audio={"frame": 0}, options={"seed": 3, "guidance": 2, "style": None,
                                                      "style_mix": ["happy", 0.5]}, progress=False),
        _req("generate", audio_path="/tmp/a.wav", heartbeat_s=1.0),
        _req("shutdown", mode="finish"),
    ):
        P.check_envelope(h)
        P.validate_request(h)


@pytest.mark.parametrize(
    "header, code",
    [
        ({"type": "ping", "id": "x"}, ErrorCode.MISSING_FIELD),
        ({"v": 99, "type": "ping", "id": "x"}, ErrorCode.VERSION_MISMATCH),
        ({"v": "1", "type": "ping", "id": "x"}, ErrorCode.BAD_TYPE),
        ({"v": 1, "type": "ping"}, ErrorCode.BAD_TYPE),
        ({"v": 1, "type": "ping", "id": "x" * 65}, ErrorCode.BAD_TYPE),
        ({"v": 1, "type": 5, "id": "x"}, ErrorCode.BAD_TYPE),
    ],
)
def test_envelope_codes(header, code) -> None:
    with pytest.raises(ProtocolError) as e:
        P.check_envelope(header)
    assert e.value.code == code


@pytest.mark.parametrize(
    "data, code",
    [
        (b"", ErrorCode.BAD_HEADER),
        (b"\xc1", ErrorCode.BAD_HEADER),  # never-used msgpack byte
        (msgpack.packb([1, 2]), ErrorCode.BAD_HEADER),  # not a map
        (msgpack.packb({1: 2}), ErrorCode.BAD_HEADER),  # non-string key
        (msgpack.packb({"a": msgpack.ExtType(1, b"xx")}), ErrorCode.BAD_HEADER),  # ext types refused
        (msgpack.packb({"a": 1}) + b"junk", ErrorCode.BAD_HEADER),
        (b"\xdd\xff\xff\xff\xff", ErrorCode.BAD_HEADER),  # claims 4 G array elements
        (b"\x80" + b"\0" * (P.MAX_HEADER_BYTES + 1), ErrorCode.TOO_LARGE),
    ],
)
def test_unpack_header_refuses(data, code) -> None:
    with pytest.raises(ProtocolError) as e:
        P.unpack_header(data)
    assert e.value.code == code


def test_framing_limits() -> None:
    h = P.pack_header(_req("ping"))
    with pytest.raises(ProtocolError) as e:
        P.decode_message([])
    assert e.value.code == ErrorCode.BAD_FRAME
    with pytest.raises(ProtocolError) as e:
        P.decode_message([h] + [b""] * P.MAX_FRAMES)
    assert e.value.code == ErrorCode.BAD_FRAME
    had, body = P.split_frames([b"", h, b"x"])
    assert had and body == [h, b"x"]
    had, body = P.split_frames([h])
    assert not had and body == [h]


def test_no_pickle_on_the_wire() -> None:
    class Thing:
        pass

    with pytest.raises(TypeError):
        P.pack_header({"x": Thing()})
    # numpy scalars in meta become plain numbers
    assert P.unpack_header(P.pack_header({"x": np.float32(1.5), "t": (1, 2)})) == {"x": 1.5, "t": [1, 2]}


def test_option_table_matches_generate_options() -> None:
    fields = {f.name for f in dataclasses.fields(GenerateOptions)} - {"style_reference", "phones"}
    assert set(P.OPTION_TYPES) == fields
    # the defaults of GenerateOptions are valid wire values
    P.validate_options({k: v for k, v in GenerateOptions().to_dict().items()})


def test_every_error_code_is_documented(repo_dir) -> None:
    doc = (repo_dir / "docs" / "protocol.md").read_text()
    declared = {v for k, v in vars(ErrorCode).items() if k.isupper() and isinstance(v, str)}
    assert declared == set(ErrorCode.ALL)
    for code in ErrorCode.ALL:
        assert re.search(rf"`{code}`", doc), f"error code {code} missing from docs/protocol.md"
    for t in P.REQUEST_FIELDS:
        assert f"`{t}`" in doc, f"message type {t} missing from docs/protocol.md"
    # the types only the server sends (job events and errors), and every generate option
    for t in ("accepted", "progress", "result", "cancelled", "error"):
        assert f"`{t}`" in doc, f"event type {t} missing from docs/protocol.md"
    for field_name in [*P.REQUEST_FIELDS["generate"], *P.OPTION_TYPES]:
        assert f"| `{field_name}` |" in doc, f"generate field/option {field_name} missing from docs/protocol.md"


def test_client_and_protocol_import_without_torch_scipy_librosa(repo_dir) -> None:
    code = (
        "import sys, json\n"
        "import motion_server.protocol, motion_server.client, motion_server.client_process\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'scipy', 'librosa', 'bpy', 'soundfile'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo_dir, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
