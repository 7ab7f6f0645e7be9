"""MotionClient: talk to a TalkRig motion server (``talkrig serve``) over ZeroMQ.

torch-free: numpy, pyzmq, msgpack and rig_mapping only, so the Blender extension can bundle it (with
``protocol.py`` and ``client_process.py``). One client = one DEALER socket; use one client per
thread (ZeroMQ sockets are not thread-safe).

Blocking use (scripts, CLI)::

    with MotionClient("tcp://127.0.0.1:5557") as c:
        motion = c.generate("speech.wav", {"seed": 3}, progress=lambda f, s: print(f, s))

Non-blocking use (a Blender timer; no threads touch bpy)::

    job = client.submit(audio_bytes, {"seed": 3})
    def tick():
        st = job.poll()              # never blocks
        if st.state in ("done", "error", "cancelled"):
            ...job.result / job.error...
            return None
        return 0.1

Reliability: requests follow the Lazy Pirate pattern (on timeout close and reopen the socket, resend the
same request id from the same routing id; the server de-duplicates per client so a job never runs
twice). While a job runs the client pings every ``heartbeat_s``; a server silent for ``timeout_s``
fails the job with a clear error, and a server that restarted (new instance id) fails it too rather
than leaving it waiting forever.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import zmq

from rig_mapping import FaceMotion

from . import protocol as P
from .protocol import ClientError, JobCancelled, ServerError, ServerUnavailable

__all__ = [
    "MotionClient", "Job", "JobStatus", "ClientError", "ServerError", "ServerUnavailable", "JobCancelled",
    "load_server_key", "DEFAULT_ADDRESS",
]

DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"
ProgressCallback = Callable[[float, str], None]

SUBMITTED, QUEUED, RUNNING, DONE, ERROR, CANCELLED = "submitted", "queued", "running", "done", "error", "cancelled"
TERMINAL = (DONE, ERROR, CANCELLED)


def load_server_key(path_or_key: str | Path | bytes) -> bytes:
    """The server's public CURVE key: 40 z85 characters, or a ``server.key`` file from ``talkrig keygen``."""
    if isinstance(path_or_key, (bytes, bytearray)) and len(path_or_key) == 40:
        return bytes(path_or_key)
    if isinstance(path_or_key, str) and len(path_or_key) == 40 and not Path(path_or_key).exists():
        return path_or_key.encode()
    import zmq.auth  # only needed for key files

    p = Path(path_or_key if not isinstance(path_or_key, bytes) else path_or_key.decode())
    if not p.is_file():
        raise ClientError(f"server key file not found: {p} (copy server.key from the server's `talkrig keygen` dir)")
    pub, _ = zmq.auth.load_certificate(str(p))
    return pub


class JobStatus(NamedTuple):
    state: str  # submitted | queued | running | done | error | cancelled
    fraction: float
    stage: str


class Job:
    """A generate or transcribe request in flight. Poll it (non-blocking) or wait for it; results arrive
    via the client. ``result`` is a FaceMotion (generate) or the transcript dict (transcribe)."""

    def __init__(self, client: MotionClient, request_id: str, message: P.Message) -> None:
        self._client = client
        self.request_id = request_id
        self._message = message  # kept to re-send after a reconnect (the server de-duplicates)
        self.id: str | None = None  # the server's job id, known once accepted
        self.state = SUBMITTED
        self.fraction = 0.0
        self.stage = "submitted"
        self.result: Any = None
        self.error: Exception | None = None
        self.timing: dict[str, float] = {}
        self.instance: str | None = None
        self.sent_at = time.monotonic()
        self.attempts = 1
        self._cancel_sent = False
        self.on_progress: ProgressCallback | None = None

    # -- public --------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def poll(self) -> JobStatus:
        """Process whatever has arrived (never blocks) and return the job's state."""
        if not self.done:
            self._client._pump(0.0)
            self._client._tick()
        return self.status

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.state, self.fraction, self.stage)

    def wait(self, timeout: float | None = None) -> FaceMotion:
        """Block until the job ends; return the FaceMotion or raise its error."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {self.id or self.request_id} still {self.state} after {timeout} s")
            self._client._pump(0.05)
            self._client._tick()
        return self.get()

    def get(self) -> FaceMotion:
        if self.state == DONE and self.result is not None:
            return self.result
        if self.error is not None:
            raise self.error
        raise ClientError(f"job {self.id or self.request_id} is {self.state}, not done")

    def cancel(self) -> None:
        """Ask the server to cancel; the job ends in state cancelled (or done, if it finished first)."""
        if self.done or self._cancel_sent:
            return
        self._cancel_sent = True
        if self.id is None:
            # not accepted yet: cancel as soon as the server names the job
            return
        self._client._send(P.make("cancel", self._client._new_id(), job=self.id))

    # -- driven by the client -----------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        if not self.done:
            self.state, self.error = ERROR, exc
            self._message = None

    def _on_message(self, msg: P.Message) -> None:
        h, t = msg.header, msg.type
        if self.done:
            return
        if t == "accepted":
            if self.instance is not None and h.get("instance") not in (None, self.instance):
                # re-sent after a reconnect and a *new* server took it: the original run is lost
                self._client._send(P.make("cancel", self._client._new_id(), job=h.get("job")))
                self._fail(ServerUnavailable(
                    f"the motion server at {self._client.address} restarted while job {self.id} was running; "
                    "the job was lost, submit it again"))
                return
            self.id = h.get("job")
            self.instance = h.get("instance", self.instance)
            if self.state == SUBMITTED:
                self.state, self.stage = QUEUED, "queued"
            if self._cancel_sent:
                self._client._send(P.make("cancel", self._client._new_id(), job=self.id))
        elif t == "progress":
            self.state = RUNNING
            self.fraction = float(h.get("fraction", self.fraction))
            self.stage = str(h.get("stage", self.stage))
            if self.on_progress is not None:
                self.on_progress(self.fraction, self.stage)
        elif t == "result":
            try:
                self.result = P.decode_motion(h.get("motion"), msg.frames)
            except P.ProtocolError as e:
                self._fail(ClientError(f"the server sent an invalid result: {e.message}"))
                return
            self.timing = dict(h.get("timing") or {})
            self.state, self.fraction, self.stage = DONE, 1.0, "done"
            self._message = None
        elif t == "transcript":
            tr = h.get("transcript")
            if not isinstance(tr, dict) or not isinstance(tr.get("text"), str):
                self._fail(ClientError("the server sent an invalid transcript"))
                return
            self.result = tr
            self.timing = dict(h.get("timing") or {})
            self.state, self.fraction, self.stage = DONE, 1.0, "done"
            self._message = None
        elif t == "cancelled":
            self.state, self.stage = CANCELLED, "cancelled"
            self.error = JobCancelled(h.get("job", self.id), str(h.get("reason", "cancelled")))
            self._message = None
        elif t == "error":
            self._fail(ServerError(str(h.get("code", "internal")), str(h.get("message", "")), h.get("job", self.id),
                                   h.get("details") if isinstance(h.get("details"), dict) else None))


class MotionClient:
    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        timeout_s: float = 30.0,
        server_public_key: bytes | str | Path | None = None,
        retries: int = 3,
        heartbeat_s: float = 1.0,
    ) -> None:
        """timeout_s bounds every wait: a request unanswered for timeout_s (split over ``retries``
        attempts, Lazy Pirate) fails, and so does a running job whose server is silent for timeout_s.
        heartbeat_s: how often to ping while a job runs; the server cancels a job whose client is
        silent for ~3 x heartbeat_s + 1 s, so raise it if polls may stall (a busy Blender UI)."""
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.address = address
        self.timeout_s = float(timeout_s)
        self.retries = max(1, int(retries))
        self.heartbeat_s = min(float(heartbeat_s), self.timeout_s / 3)
        self.server_public_key = load_server_key(server_public_key) if server_public_key is not None else None
        self._ctx = zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        # The server keys jobs by this (its ROUTER sees it as our identity): it stays the same across
        # Lazy Pirate reconnects so a re-sent request finds its job, and it is random so no other client
        # can claim our jobs. Never starts with a zero byte (zmq reserves those).
        self._routing_id = b"tr" + os.urandom(16)
        self._jobs: dict[str, Job] = {}  # request id -> active job
        self._replies: dict[str, P.Message | None] = {}  # request id -> reply (None: still waiting)
        self._pings: set[str] = set()
        self._last_rx = time.monotonic()
        self._last_ping = 0.0
        self._closed = False

    # -- socket ----------------------------------------------------------------------------------
    def _open(self) -> zmq.Socket:
        if self._closed:
            raise ClientError("this MotionClient is closed")
        if self._sock is None:
            s = self._ctx.socket(zmq.DEALER)
            s.routing_id = self._routing_id
            s.linger = 0
            s.rcvhwm = 0
            s.sndhwm = 0
            if "://[" in self.address:  # an IPv6 literal like tcp://[::1]:5557
                s.ipv6 = True
            if self.server_public_key is not None:
                pub, sec = zmq.curve_keypair()  # an ephemeral client key: the server authenticates itself
                s.curve_serverkey = self.server_public_key
                s.curve_publickey = pub
                s.curve_secretkey = sec
            s.connect(self.address)
            self._sock = s
        return self._sock

    def _reconnect(self) -> None:
        """Lazy Pirate: a fresh socket drops anything queued for a dead peer. Active jobs are re-sent
        with their original request id: the server re-routes them (or replays their result)."""
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self._pings.clear()
        for job in list(self._jobs.values()):
            if job._message is not None and not job.done:
                self._send(job._message)
                job.sent_at = time.monotonic()

    def _send(self, msg: P.Message) -> None:
        try:
            self._open().send_multipart(msg.to_frames(delimiter=True), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass  # no peer can take it now; the request's timeout and retry handle that

    def _new_id(self) -> str:
        return uuid.uuid4().hex

    # -- receiving -------------------------------------------------------------------------------
    def _pump(self, timeout_s: float) -> None:
        """Wait up to timeout_s for messages, then dispatch everything that has arrived."""
        sock = self._open()
        if not sock.poll(int(timeout_s * 1000), zmq.POLLIN):
            return
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_rx = time.monotonic()
            self._dispatch(frames)

    def _dispatch(self, frames: list[bytes]) -> None:
        try:
            _, body = P.split_frames(frames)
            msg = P.decode_message(body)
        except P.ProtocolError:
            return  # not from a TalkRig server, or garbled: nothing to route it to
        rid = msg.id
        if rid in self._replies:
            self._replies[rid] = msg
        elif rid in self._pings:
            self._pings.discard(rid)
            self._on_pong(msg)
        elif rid in self._jobs:
            job = self._jobs[rid]
            job._on_message(msg)
            if job.done:
                self._jobs.pop(rid, None)
        # anything else is a stale answer to a request we gave up on

    def _on_pong(self, msg: P.Message) -> None:
        if msg.type != "ping":
            return
        states = msg.header.get("jobs") or {}
        inst = msg.header.get("instance")
        for job in list(self._jobs.values()):
            if job.id is None or job.done:
                continue
            if (job.instance and inst and inst != job.instance) or states.get(job.id) == "unknown":
                job._fail(ServerUnavailable(
                    f"the motion server at {self.address} restarted while job {job.id} was running; "
                    "the job was lost, submit it again"))
                self._jobs.pop(job.request_id, None)
            elif states.get(job.id) in TERMINAL and job._message is not None:
                # it ended but its final event never came (the server dropped connections): the same
                # request again makes the server repeat it
                self._send(job._message)

    def _tick(self) -> None:
        """Heartbeats and timeouts for active jobs; called from every wait/poll loop."""
        if not self._jobs:
            return
        now = time.monotonic()
        accepted = [j for j in self._jobs.values() if j.id is not None]
        if accepted and now - self._last_ping >= self.heartbeat_s:
            self._last_ping = now
            rid = self._new_id()
            self._pings.add(rid)
            if len(self._pings) > 64:  # unanswered pings of a silent server: keep the set bounded
                self._pings = set(list(self._pings)[-32:])
            self._send(P.make("ping", rid, jobs=[j.id for j in accepted]))
        silent = now - self._last_rx
        if accepted and silent > self.timeout_s:
            self._fail_all(ServerUnavailable(
                f"the motion server at {self.address} stopped responding (no answer for {silent:.0f} s) while "
                f"job(s) {', '.join(str(j.id) for j in accepted)} ran; check the server's console, restart it "
                "with `talkrig serve`, and submit again"))
            return
        per_try = self.timeout_s / self.retries
        waiting = [j for j in self._jobs.values() if j.id is None]
        if waiting and now - min(j.sent_at for j in waiting) > per_try:
            if max(j.attempts for j in waiting) >= self.retries:
                self._fail_all(self._unreachable())
                return
            for j in waiting:
                j.attempts += 1
            self._reconnect()

    def _fail_all(self, exc: Exception) -> None:
        for job in list(self._jobs.values()):
            job._fail(exc)
        self._jobs.clear()
        if self._sock is not None:  # anything still queued on this socket is stale now
            self._sock.close(0)
            self._sock = None

    def _unreachable(self) -> ServerUnavailable:
        key = (" and the server public key" if self.server_public_key is not None
               else " (a server started with --curve-secret also needs its public key, server.key)")
        return ServerUnavailable(
            f"no answer from the TalkRig motion server at {self.address} within {self.timeout_s:g} s "
            f"({self.retries} tries). Start it with `talkrig serve --bind {self.address}` (or the add-on's "
            f"Start Server button), or check the address{key}"
        )

    # -- request/reply ---------------------------------------------------------------------------
    def _request(self, type_: str, **fields: Any) -> dict[str, Any]:
        rid = self._new_id()
        msg = P.make(type_, rid, **fields)
        per_try = self.timeout_s / self.retries
        self._replies[rid] = None
        try:
            for _attempt in range(self.retries):
                self._send(msg)
                deadline = time.monotonic() + per_try
                while self._replies[rid] is None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._pump(min(left, 0.1))
                    self._tick()
                reply = self._replies[rid]
                if reply is not None:
                    if reply.type == "error":
                        h = reply.header
                        raise ServerError(str(h.get("code")), str(h.get("message")), h.get("job"),
                                          h.get("details") if isinstance(h.get("details"), dict) else None)
                    return {k: v for k, v in reply.header.items() if k not in ("v", "id")}
                self._reconnect()
            raise self._unreachable()
        finally:
            self._replies.pop(rid, None)

    def hello(self) -> dict[str, Any]:
        """Version negotiation; returns the server's version, engine, instance id, limits."""
        return self._request("hello", versions=list(P.SUPPORTED_VERSIONS), client="talkrig-client")

    def list(self) -> dict[str, Any]:
        """Engines, the running engine's info, style presets and option defaults."""
        return self._request("list")

    def status(self) -> dict[str, Any]:
        """Queue, running job, device, model, counters."""
        return self._request("status")

    def ping(self) -> float:
        """Round-trip time in seconds (raises ServerUnavailable when there is no server)."""
        t0 = time.perf_counter()
        self._request("ping")
        return time.perf_counter() - t0

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job by its server job id: one of this client's own (another client's answers
        not_found unless the server runs with --shared-jobs). Returns {"job", "state"}."""
        return self._request("cancel", job=job_id)

    def shutdown(self, mode: str = "cancel") -> dict[str, Any]:
        """Stop the server (local clients only). mode "cancel" cancels jobs; "finish" runs them first."""
        return self._request("shutdown", mode=mode)

    # -- jobs ------------------------------------------------------------------------------------
    def submit(
        self,
        audio: bytes | str | Path,
        options: Mapping[str, Any] | Any | None = None,
        progress: bool = True,
    ) -> Job:
        """Queue a generate job and return at once; drive it with ``job.poll()`` or ``job.wait()``."""
        frames: list[Any] = []
        fields: dict[str, Any] = {"audio": P.encode_blob(_audio_bytes(audio), frames), "progress": bool(progress),
                                  "heartbeat_s": self.heartbeat_s}
        opts, style_ref = _split_options(options)
        if opts:
            fields["options"] = opts
        if style_ref is not None:
            fields["style_reference"] = P.encode_motion(style_ref, frames)
        return self._submit("generate", frames, fields)

    def submit_transcribe(self, audio: bytes | str | Path, progress: bool = True) -> Job:
        """Queue a transcribe job (what the take says, text only) and return at once."""
        frames: list[Any] = []
        fields: dict[str, Any] = {"audio": P.encode_blob(_audio_bytes(audio), frames), "progress": bool(progress),
                                  "heartbeat_s": self.heartbeat_s}
        return self._submit("transcribe", frames, fields)

    def _submit(self, type_: str, frames: list[Any], fields: dict[str, Any]) -> Job:
        rid = self._new_id()
        msg = P.make(type_, rid, frames, **fields)
        job = Job(self, rid, msg)
        self._jobs[rid] = job
        self._send(msg)
        return job

    def generate(
        self,
        audio: bytes | str | Path,
        options: Mapping[str, Any] | Any | None = None,
        progress: ProgressCallback | None = None,
        cancel_event: Any = None,
    ) -> FaceMotion:
        """Blocking: audio (file bytes or a path) -> FaceMotion. ``progress(fraction, stage)`` is called
        in this thread; setting ``cancel_event`` (anything with ``is_set()``) cancels the job."""
        return self._wait_blocking(self.submit(audio, options, progress=progress is not None), progress, cancel_event)

    def transcribe(self, audio: bytes | str | Path, progress: ProgressCallback | None = None,
                   cancel_event: Any = None) -> dict[str, Any]:
        """Blocking: what the take says. Returns {text, language, language_probability, words: [[word,
        start, end, probability]...], model, seconds, notes}; progress and cancel as in :meth:`generate`."""
        job = self.submit_transcribe(audio, progress=progress is not None)
        return self._wait_blocking(job, progress, cancel_event)

    def _wait_blocking(self, job: Job, progress: ProgressCallback | None, cancel_event: Any) -> Any:
        job.on_progress = progress
        try:
            while not job.done:
                if cancel_event is not None and cancel_event.is_set():
                    job.cancel()
                self._pump(0.05)
                self._tick()
        except BaseException:  # Ctrl+C in a CLI: do not leave the server working for nobody
            if not job.done and job.id is not None:
                try:
                    self._send(P.make("cancel", self._new_id(), job=job.id))
                except zmq.ZMQError:
                    pass
            self._jobs.pop(job.request_id, None)
            raise
        return job.get()

    # -- lifetime --------------------------------------------------------------------------------
    def close(self) -> None:
        for job in list(self._jobs.values()):
            job._fail(ClientError("the client was closed"))
        self._jobs.clear()
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        self._closed = True

    def __enter__(self) -> MotionClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if self._sock is not None:
                self._sock.close(0)
        except Exception:
            pass


def _audio_bytes(audio: bytes | str | Path) -> bytes:
    if isinstance(audio, (bytes, bytearray, memoryview)):
        b = bytes(audio)
        if not b:
            raise ClientError("audio is empty (0 bytes)")
        return b
    if isinstance(audio, (str, Path)):
        p = Path(audio)
        if not p.is_file():
            raise ClientError(f"audio file not found: {p}")
        return p.read_bytes()
    raise ClientError(f"audio must be file bytes or a path, got {type(audio).__name__}")


def _split_options(options: Mapping[str, Any] | Any | None) -> tuple[dict[str, Any], FaceMotion | None]:
    """A dict or a GenerateOptions -> (wire options, style reference motion)."""
    if options is None:
        return {}, None
    if hasattr(options, "to_dict"):
        ref = getattr(options, "style_reference", None)
        d = dict(options.to_dict())
    elif isinstance(options, Mapping):
        d = dict(options)
        ref = d.pop("style_reference", None)
    else:
        raise ClientError(f"options must be a dict or GenerateOptions, got {type(options).__name__}")
    # unset options are left out (the server reads a missing option as unset), so a server from before an
    # option was added still takes the job
    d = {k: v for k, v in d.items() if v is not None}
    if d.get("style_mix") is not None:
        d["style_mix"] = list(d["style_mix"])
        if _is_clip_path(d["style_mix"][0]):
            raise ClientError("style_mix takes a style preset name through a server; mix a reference clip "
                              "in-process instead (talkrig generate without --server)")
    if ref is None and _is_clip_path(d.get("style")):
        # the server never opens a path a client names: read the clip here and send it as data
        from rig_mapping.formats import load_motion

        try:
            ref = load_motion(d["style"])
        except Exception as e:  # FileNotFoundError, MotionError, a bad CSV cell: one line for the user
            raise ClientError(f"style reference clip {d['style']}: {e}") from None
        d["style"] = None
    if ref is not None and not isinstance(ref, FaceMotion):
        raise ClientError("style_reference must be a FaceMotion")
    return d, ref


def _is_clip_path(style: Any) -> bool:
    """A style string that names a motion file on this machine (not a preset name)."""
    if not isinstance(style, str) or not style or P.STYLE_NAME.fullmatch(style):
        return False
    return Path(style).suffix.lower() in (".csv", ".npz", ".json") or Path(style).is_file()
