"""The TalkRig motion server wire protocol: framing, msgpack headers, arrays, FaceMotion, errors.

torch-free (numpy + msgpack + rig_mapping only): this module is bundled into the Blender extension
together with ``client.py``. The full specification is docs/protocol.md; this module is its code.

A message is a ZeroMQ multipart message::

    [b"" (delimiter, optional), header, payload frame 0, payload frame 1, ...]

``header`` is a msgpack map with at least ``v`` (protocol version), ``type`` and ``id`` (request id;
replies and events carry the id of the request they answer). Binary data never goes inside the
header: a field refers to a payload frame by index, e.g. ``{"frame": 0}`` for opaque bytes (an audio
file) or ``{"dtype": "<f4", "shape": [T, 52], "frame": 0}`` for an array (raw little-endian bytes,
C order). No pickle anywhere.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from motion_server.options import OPTIONS
from rig_mapping import FaceMotion, MotionError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

MAX_FRAMES = 8  # header + a handful of payload frames
MAX_HEADER_BYTES = 1 << 20  # 1 MiB of msgpack header is far more than any valid request needs
MAX_ID_LEN = 64
MAX_STR_LEN = 4096  # for ordinary string fields (paths, style names, transcripts get their own)
MAX_TRANSCRIPT_LEN = 100_000
MAX_ARRAY_DIMS = 4

# A style a client names: a preset ("happy", "happy:3"), "predicted", never a path. The server opens no
# file a peer names; a reference clip travels as data (``style_reference``), read by the client.
STYLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_:+\-]{0,63}")
# A style reference clip: its rate and length are checked before anything resamples it.
STYLE_REFERENCE_FPS = (1.0, 240.0)
STYLE_REFERENCE_MAX_FRAMES = 72_000  # 5 min at 240 fps; style encoders use a few seconds

# dtypes allowed on the wire; all explicitly little-endian (or single byte)
WIRE_DTYPES: frozenset[str] = frozenset({"<f4", "<f8", "<i2", "<i4", "<i8", "|u1", "|i1", "<u2", "<u4"})


class ErrorCode:
    """Stable machine-readable error codes (documented in docs/protocol.md)."""

    BAD_FRAME = "bad_frame"  # framing: missing header, too many frames, unreferenced payload frames
    BAD_HEADER = "bad_header"  # header is not a msgpack map
    TOO_LARGE = "too_large"  # message, header, string or array beyond the server's limits
    VERSION_MISMATCH = "version_mismatch"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_FIELD = "unknown_field"
    MISSING_FIELD = "missing_field"
    BAD_TYPE = "bad_type"
    BAD_VALUE = "bad_value"
    BAD_AUDIO = "bad_audio"  # undecodable, empty, missing file
    AUDIO_TOO_LONG = "audio_too_long"
    NOT_FOUND = "not_found"  # cancel of an unknown job
    BUSY = "busy"  # job queue full
    SHUTTING_DOWN = "shutting_down"
    FORBIDDEN = "forbidden"  # shutdown / local paths from a non-local peer
    ENGINE_REJECTED = "engine_rejected"  # the engine refused the input (message says why)
    ENGINE_ERROR = "engine_error"  # the engine failed; details in the server log
    INTERNAL = "internal"

    ALL: tuple[str, ...] = (
        "bad_frame", "bad_header", "too_large", "version_mismatch", "unknown_type", "unknown_field",
        "missing_field", "bad_type", "bad_value", "bad_audio", "audio_too_long", "not_found", "busy",
        "shutting_down", "forbidden", "engine_rejected", "engine_error", "internal",
    )  # fmt: skip


class ProtocolError(Exception):
    """A message that breaks the protocol. ``code`` is one of ErrorCode; the message says what to fix."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


# -- client-side exceptions (raised by MotionClient; defined here so the bundle needs no other module)


class ClientError(Exception):
    """Base class of everything MotionClient raises."""


class ServerUnavailable(ClientError):
    """The server did not answer (not running, wrong address/key, or stopped responding)."""


class ServerError(ClientError):
    """The server answered with a structured error."""

    def __init__(self, code: str, message: str, job: str | None = None, details: dict | None = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.job = job
        self.details = details or {}


class JobCancelled(ClientError):
    """The job was cancelled (by this client, another client, or a server shutdown)."""

    def __init__(self, job: str | None, reason: str = "cancelled") -> None:
        super().__init__(f"job {job} cancelled: {reason}")
        self.job = job
        self.reason = reason


# -- packing ----------------------------------------------------------------------------------------


def _default(obj: Any) -> Any:
    # numpy scalars/arrays can sneak into meta dicts; send them as plain numbers/lists
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot send a {type(obj).__name__} over the wire")


def pack_header(header: Mapping[str, Any]) -> bytes:
    return msgpack.packb(dict(header), use_bin_type=True, default=_default)


def unpack_header(data: bytes | memoryview) -> dict[str, Any]:
    """msgpack -> dict with hard limits, so a hostile header cannot exhaust memory."""
    n = len(data)
    if n == 0:
        raise ProtocolError(ErrorCode.BAD_HEADER, "empty header frame; the first frame must be a msgpack map")
    if n > MAX_HEADER_BYTES:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"header is {n} bytes; the limit is {MAX_HEADER_BYTES}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=n,
            max_bin_len=n,
            max_array_len=min(n, 100_000),
            max_map_len=min(n, 10_000),
            max_ext_len=0,
        )
    except Exception as e:  # msgpack raises many kinds (ExtraData, ValueError, UnicodeDecodeError...)
        raise ProtocolError(ErrorCode.BAD_HEADER, f"header is not valid msgpack: {type(e).__name__}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_HEADER, f"header must be a msgpack map, got {type(obj).__name__}")
    return obj


@dataclass
class Message:
    """One decoded message: header map + payload frames (bytes or zero-copy memoryviews)."""

    header: dict[str, Any]
    frames: list[Any] = field(default_factory=list)

    @property
    def type(self) -> str:
        return self.header.get("type", "")

    @property
    def id(self) -> str | None:
        rid = self.header.get("id")
        return rid if isinstance(rid, str) else None

    def to_frames(self, delimiter: bool = True) -> list[Any]:
        out: list[Any] = [b""] if delimiter else []
        out.append(pack_header(self.header))
        out.extend(self.frames)
        return out


def make(type_: str, id_: str | None, frames: Sequence[Any] = (), **fields_: Any) -> Message:
    h: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": type_, "id": id_}
    h.update(fields_)
    return Message(h, list(frames))


def error_message(id_: str | None, code: str, message: str, job: str | None = None, **details: Any) -> Message:
    fields_: dict[str, Any] = {"code": code, "message": message}
    if job is not None:
        fields_["job"] = job
    if details:
        fields_["details"] = details
    return make("error", id_, **fields_)


def split_frames(frames: Sequence[Any]) -> tuple[bool, list[Any]]:
    """Strip the optional empty delimiter frame. Returns (had_delimiter, [header, *payload])."""
    frames = list(frames)
    had = bool(frames) and len(frames[0]) == 0
    return had, frames[1:] if had else frames


def decode_message(frames: Sequence[Any]) -> Message:
    """[header, *payload] (delimiter already stripped) -> Message, checking framing and envelope."""
    if not frames:
        raise ProtocolError(ErrorCode.BAD_FRAME, "message has no header frame")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"message has {len(frames)} frames; at most {MAX_FRAMES}")
    header = unpack_header(frames[0])
    check_envelope(header)
    return Message(header, list(frames[1:]))


def check_envelope(header: Mapping[str, Any]) -> None:
    """v, type and id: present and of the right type. Version mismatch is its own error code."""
    rid = header.get("id")
    # printable only: ids end up in log lines, and a newline in one would forge a line
    if not isinstance(rid, str) or not (0 < len(rid) <= MAX_ID_LEN) or not rid.isprintable():
        raise ProtocolError(ErrorCode.BAD_TYPE, f"'id' must be a string of 1..{MAX_ID_LEN} printable characters")
    v = header.get("v")
    if isinstance(v, bool) or not isinstance(v, int):
        raise ProtocolError(ErrorCode.MISSING_FIELD if v is None else ErrorCode.BAD_TYPE,
                            "'v' (protocol version) must be an integer")
    if v not in SUPPORTED_VERSIONS:
        raise ProtocolError(
            ErrorCode.VERSION_MISMATCH,
            f"protocol version {v} is not supported; this side speaks {list(SUPPORTED_VERSIONS)} "
            "(update the older of client and server)",
            supported=list(SUPPORTED_VERSIONS),
        )
    if not isinstance(header.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_TYPE, "'type' must be a string naming the message type")


# -- arrays and blobs -------------------------------------------------------------------------------


def encode_array(arr: np.ndarray, frames: list[Any]) -> dict[str, Any]:
    """Append the array's raw little-endian bytes to ``frames``; return its header reference."""
    a = np.asarray(arr)
    dt = a.dtype.newbyteorder("<")  # no-op for single-byte types
    if dt.str not in WIRE_DTYPES:
        raise ProtocolError(ErrorCode.BAD_TYPE, f"dtype {a.dtype} cannot be sent; allowed: {sorted(WIRE_DTYPES)}")
    a = np.ascontiguousarray(a, dtype=dt)
    frames.append(memoryview(a).cast("B") if a.size else b"")  # zero-copy, flat bytes view
    return {"dtype": dt.str, "shape": list(a.shape), "frame": len(frames) - 1}


def _frame_at(ref: Mapping[str, Any], frames: Sequence[Any], what: str) -> Any:
    idx = ref.get("frame")
    if isinstance(idx, bool) or not isinstance(idx, int):
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what}.frame must be an integer payload frame index")
    if not 0 <= idx < len(frames):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"{what}.frame = {idx} but the message has {len(frames)} payload frame(s)")
    return frames[idx]


def decode_array(ref: Any, frames: Sequence[Any], what: str = "array", max_elems: int = 1 << 28) -> np.ndarray:
    """Header reference + payload frames -> read-only ndarray. Bit-exact; checks size against shape."""
    if not isinstance(ref, Mapping):
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what} must be a map with dtype, shape, frame")
    unknown = set(ref) - {"dtype", "shape", "frame"}
    if unknown:
        raise ProtocolError(ErrorCode.UNKNOWN_FIELD, f"{what} has unknown field(s) {sorted(unknown)}")
    dtype = ref.get("dtype")
    if not isinstance(dtype, str) or dtype not in WIRE_DTYPES:
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what}.dtype must be one of {sorted(WIRE_DTYPES)}, got {dtype!r}")
    shape = ref.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_ARRAY_DIMS
        or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < (1 << 31) for s in shape)
    ):
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what}.shape must be a list of up to {MAX_ARRAY_DIMS} non-negative ints")
    n = math.prod(shape)
    if n > max_elems:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{what} has {n} elements; the limit is {max_elems}")
    buf = _frame_at(ref, frames, what)
    dt = np.dtype(dtype)
    nbytes = memoryview(buf).nbytes
    if nbytes != n * dt.itemsize:
        raise ProtocolError(
            ErrorCode.BAD_VALUE, f"{what}: shape {shape} x {dtype} needs {n * dt.itemsize} bytes, frame has {nbytes}"
        )
    a = np.frombuffer(buf, dtype=dt, count=n).reshape(shape) if n else np.zeros(shape, dt)
    return a.astype(dt.newbyteorder("="), copy=False)


def encode_blob(data: bytes, frames: list[Any]) -> dict[str, Any]:
    frames.append(data)
    return {"frame": len(frames) - 1}


def decode_blob(ref: Any, frames: Sequence[Any], what: str = "blob") -> Any:
    if not isinstance(ref, Mapping):
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what} must be a map {{'frame': index}}")
    unknown = set(ref) - {"frame"}
    if unknown:
        raise ProtocolError(ErrorCode.UNKNOWN_FIELD, f"{what} has unknown field(s) {sorted(unknown)}")
    return _frame_at(ref, frames, what)


# -- FaceMotion -------------------------------------------------------------------------------------


def encode_motion(motion: FaceMotion, frames: list[Any]) -> dict[str, Any]:
    return {
        "fps": float(motion.fps),
        "weights": encode_array(motion.weights, frames),
        "head": encode_array(motion.head, frames),
        "meta": motion.meta,
    }


def decode_motion(ref: Any, frames: Sequence[Any], what: str = "motion", fps_range: tuple[float, float] | None = None,
                  max_frames: int | None = None) -> FaceMotion:
    """Encoded FaceMotion -> FaceMotion. ``fps_range`` / ``max_frames`` bound a clip from a peer before
    anything (resampling, style encoding) can act on it."""
    if not isinstance(ref, Mapping):
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what} must be a map with fps, weights, head, meta")
    unknown = set(ref) - {"fps", "weights", "head", "meta"}
    if unknown:
        raise ProtocolError(ErrorCode.UNKNOWN_FIELD, f"{what} has unknown field(s) {sorted(unknown)}")
    for k in ("fps", "weights", "head"):
        if k not in ref:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{what}.{k} is missing")
    fps = ref["fps"]
    if isinstance(fps, bool) or not isinstance(fps, (int, float)):
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what}.fps must be a number")
    if fps_range is not None and not (math.isfinite(fps) and fps_range[0] <= fps <= fps_range[1]):
        raise ProtocolError(ErrorCode.BAD_VALUE, f"{what}.fps must be within {fps_range[0]:g}..{fps_range[1]:g}")
    if max_frames is not None:
        for k in ("weights", "head"):
            shape = ref[k].get("shape") if isinstance(ref[k], Mapping) else None
            if isinstance(shape, list) and shape and isinstance(shape[0], int) and shape[0] > max_frames:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"{what} has {shape[0]} frames; at most {max_frames}")
    meta = ref.get("meta", {})
    if not isinstance(meta, dict):
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what}.meta must be a map")
    w = decode_array(ref["weights"], frames, f"{what}.weights")
    h = decode_array(ref["head"], frames, f"{what}.head")
    if w.dtype != np.float32 or h.dtype != np.float32:
        raise ProtocolError(ErrorCode.BAD_TYPE, f"{what}.weights and .head must be <f4 (float32)")
    try:
        return FaceMotion(fps=float(fps), weights=w, head=h, meta=meta)
    except MotionError as e:
        raise ProtocolError(ErrorCode.BAD_VALUE, f"{what}: {e}") from None


# -- request schemas --------------------------------------------------------------------------------

# Field type tags: "str", "int", "num" (int or float, finite), "bool", "map", "list", "any";
# a trailing "?" allows nil.
ENVELOPE = {"v": "int", "type": "str", "id": "str"}

REQUEST_FIELDS: dict[str, dict[str, str]] = {
    "hello": {"versions": "list?", "client": "str?"},
    "list": {},
    "status": {},
    "ping": {"jobs": "list?"},
    "cancel": {"job": "str"},
    "shutdown": {"mode": "str?"},
    "generate": {
        "audio": "map?",  # {"frame": i}: bytes of an audio file in any common container
        "audio_path": "str?",  # a file on the server's machine (local peers only)
        "options": "map?",
        "style_reference": "map?",  # an encoded FaceMotion
        "progress": "bool?",
        "heartbeat_s": "num?",  # the client pings at least this often; silent owners' jobs are cancelled
    },
    # recognise what a take says (text only, for the user to read and correct); a job like generate
    "transcribe": {"audio": "map?", "audio_path": "str?", "progress": "bool?", "heartbeat_s": "num?"},
}
REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {"cancel": ("job",)}

# GenerateOptions fields a client may send (style_reference travels as its own field): types and
# ranges come from the one option table (motion_server.options, stdlib-only, bundled with this module).
# An option whose default is None may be sent as nil ("not chosen": the model's or the style's own).
OPTION_TYPES: dict[str, str] = {o.name: o.wire_type for o in OPTIONS}
OPTION_RANGES: dict[str, tuple[float, float]] = {o.name: o.range for o in OPTIONS if o.range is not None}
OPTION_CHOICES: dict[str, tuple[str, ...]] = {o.name: o.choices for o in OPTIONS if o.choices is not None}
# how an error names them: the list, or a phrase where it is long (the language codes)
_CHOICES_TEXT: dict[str, str] = {o.name: o.choices_text or f"one of {list(o.choices)}" for o in OPTIONS
                                 if o.choices is not None}
SHUTDOWN_MODES = ("cancel", "finish")


def _type_ok(value: Any, tag: str) -> bool:
    if tag.endswith("?"):
        if value is None:
            return True
        tag = tag[:-1]
    if tag == "any":
        return True
    if tag == "str":
        return isinstance(value, str)
    if tag == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if tag == "num":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if tag == "bool":
        return isinstance(value, bool)
    if tag == "map":
        return isinstance(value, dict)
    if tag == "list":
        return isinstance(value, list)
    raise AssertionError(tag)


def _check_fields(d: Mapping[str, Any], schema: Mapping[str, str], where: str, required: Sequence[str] = ()) -> None:
    unknown = set(d) - set(schema)
    if unknown:
        raise ProtocolError(
            ErrorCode.UNKNOWN_FIELD,
            f"{where}: unknown field(s) {sorted(map(str, unknown))}; known: {sorted(schema)}",
        )
    for k in required:
        if k not in d:
            raise ProtocolError(ErrorCode.MISSING_FIELD, f"{where}: required field {k!r} is missing")
    for k, v in d.items():
        tag = schema[k]
        if not _type_ok(v, tag):
            want = tag.rstrip("?") + (" or nil" if tag.endswith("?") else "")
            raise ProtocolError(ErrorCode.BAD_TYPE, f"{where}: field {k!r} must be {want}, got {type(v).__name__}")
        if isinstance(v, str) and len(v) > (MAX_TRANSCRIPT_LEN if k == "transcript" else MAX_STR_LEN):
            raise ProtocolError(ErrorCode.TOO_LARGE, f"{where}: field {k!r} is {len(v)} characters long")


def validate_request(header: Mapping[str, Any]) -> None:
    """Check a request header against its schema (the envelope must already be valid)."""
    t = header["type"]
    schema = REQUEST_FIELDS.get(t)
    if schema is None:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE, f"unknown message type {t[:40]!r}; known: {sorted(REQUEST_FIELDS)}"
        )
    body = {k: v for k, v in header.items() if k not in ENVELOPE}
    _check_fields(body, schema, t, REQUIRED_FIELDS.get(t, ()))
    if t == "hello" and body.get("versions") is not None:
        vs = body["versions"]
        if not vs or len(vs) > 32 or not all(isinstance(x, int) and not isinstance(x, bool) for x in vs):
            raise ProtocolError(ErrorCode.BAD_TYPE, "hello: 'versions' must be a non-empty list of integers")
    elif t == "ping" and body.get("jobs") is not None:
        js = body["jobs"]
        if len(js) > 1024 or not all(isinstance(x, str) and len(x) <= MAX_ID_LEN for x in js):
            raise ProtocolError(ErrorCode.BAD_TYPE, "ping: 'jobs' must be a list of job id strings")
    elif t == "shutdown" and body.get("mode") is not None and body["mode"] not in SHUTDOWN_MODES:
        raise ProtocolError(ErrorCode.BAD_VALUE, f"shutdown: 'mode' must be one of {SHUTDOWN_MODES}")
    elif t in ("generate", "transcribe"):
        has_audio = body.get("audio") is not None
        has_path = body.get("audio_path") is not None
        if has_audio == has_path:
            raise ProtocolError(
                ErrorCode.MISSING_FIELD if not has_audio else ErrorCode.BAD_VALUE,
                f"{t}: give exactly one of 'audio' (file bytes in a payload frame) or 'audio_path'",
            )
        hb = body.get("heartbeat_s")
        if hb is not None and not 0.05 <= hb <= 3600:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"{t}: 'heartbeat_s' must be in [0.05, 3600]")
        if t == "generate":
            validate_options(body.get("options") or {})


def validate_options(opts: Mapping[str, Any]) -> dict[str, Any]:
    """Type- and range-check generate options against the option table; returns them unchanged (engines
    apply defaults)."""
    _check_fields(opts, OPTION_TYPES, "generate.options")
    for k, (lo, hi) in OPTION_RANGES.items():
        v = opts.get(k)
        if v is not None and not lo <= v <= hi:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"generate.options: {k} = {v} is outside [{lo:g}, {hi:g}]")
    for k, choices in OPTION_CHOICES.items():
        v = opts.get(k)
        if v is not None and v not in choices:
            raise ProtocolError(ErrorCode.BAD_VALUE, f"generate.options: {k} = {v!r} is not {_CHOICES_TEXT[k]}")
    mix = opts.get("style_mix")
    if mix is not None:
        ok = (
            len(mix) == 2
            and isinstance(mix[0], str)
            and len(mix[0]) <= MAX_STR_LEN
            and _type_ok(mix[1], "num")
            and 0.0 <= mix[1] <= 1.0
        )
        if not ok:
            raise ProtocolError(ErrorCode.BAD_VALUE, "generate.options: style_mix must be [style name, t in 0..1]")
    for key, name in (("style", opts.get("style")), ("style_mix", mix[0] if mix is not None else None)):
        check_style_name(name, f"generate.options.{key}")
    return dict(opts)


def check_style_name(name: str | None, where: str) -> None:
    """A style named over the wire is a preset or "predicted": never a path the server would open."""
    if name and not STYLE_NAME.fullmatch(name):
        raise ProtocolError(
            ErrorCode.BAD_VALUE,
            f"{where} must be a style preset name or 'predicted' (letters, digits, _ - : +, at most 64); "
            "a reference clip is sent as data in 'style_reference' (MotionClient reads a clip file for you)",
        )
