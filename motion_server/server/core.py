"""The socket loop: one ROUTER socket, requests answered at once, jobs handed to the engine worker.

The loop never blocks on the engine, so hello/status/ping/cancel are answered while a job runs.
Every request is validated (motion_server.protocol) before it is acted on; anything malformed gets a
structured error and the loop goes on.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import OrderedDict, deque
from dataclasses import asdict
from typing import Any

import zmq

from rig_mapping import FaceMotion

from .. import __version__
from .. import protocol as P
from ..engine.base import Engine, GenerateOptions
from ..pipeline import MotionPipeline
from ..protocol import ErrorCode, Message, ProtocolError
from .config import ServerConfig, check_binds, is_local_address, is_local_peer
from .jobs import CANCELLED, DONE, ERROR, QUEUED, RUNNING, Event, Job, JobQueue, QueueFull
from .keys import apply_server_keys, load_secret
from .worker import EngineWorker

log = logging.getLogger("talkrig.server")

_MAX_BATCH = 256  # messages handled per loop turn before worker events get a look-in
_FINISHED_KEEP = 1024  # finished job states remembered for cancel/ping answers
_REPLAY_KEEP = 32  # terminal messages kept to answer a re-sent generate (Lazy Pirate retry)


def _plain(obj: Any, depth: int = 0) -> Any:
    """Make engine.info() output msgpack-safe: unknown objects become strings."""
    if depth > 8:
        return str(obj)
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):
        try:
            return _plain(obj.item(), depth + 1)
        except Exception:
            pass
    return str(obj)


class MotionServer:
    def __init__(self, engine: Engine, config: ServerConfig | None = None, recogniser: Any = None) -> None:
        """``recogniser``: speech recognition for takes without a transcript and for ``transcribe``
        requests (a motion_server.transcribe.Recogniser; loaded on first use, once per process)."""
        self.engine = engine
        self.pipeline = MotionPipeline(engine, recogniser)
        self.config = config or ServerConfig()
        self.instance = uuid.uuid4().hex[:12]
        self.started = time.monotonic()
        self.endpoints: list[str] = []
        self.info = _plain(engine.info() if hasattr(engine, "info") else {})
        self.engine_name = str(getattr(engine, "name", self.info.get("name", type(engine).__name__)))
        self.queue = JobQueue(self.config.max_queue)
        self.jobs: dict[str, Job] = {}  # queued and running
        self.by_request: dict[str, Job] = {}
        self.finished: OrderedDict[str, str] = OrderedDict()  # job id -> terminal state
        self.replay: OrderedDict[str, tuple[Job, Message]] = OrderedDict()  # request id -> terminal msg
        self.last_seen: dict[bytes, float] = {}
        self.counts = {DONE: 0, ERROR: 0, CANCELLED: 0}
        self.stopping: str | None = None  # None | "cancel" | "finish"
        self.ended_while_stopping: dict[str, list[str]] = {DONE: [], ERROR: [], CANCELLED: []}
        self.stop_deadline: float | None = None
        self._events: deque[Event] = deque()
        self._stop_request: tuple[str, str] | None = None
        self._all_local = True
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._wake_pull: zmq.Socket | None = None
        self._wake_addr = f"inproc://talkrig-wake-{self.instance}"
        self._wake_push_local = None
        self._worker: EngineWorker | None = None
        self._handlers = {
            "hello": self._on_hello,
            "list": self._on_list,
            "status": self._on_status,
            "ping": self._on_ping,
            "cancel": self._on_cancel,
            "shutdown": self._on_shutdown,
            "generate": self._on_generate,
            "transcribe": self._on_generate,  # the same job life cycle; the worker tells them apart
        }

    # -- setup ------------------------------------------------------------------------------------
    def bind(self) -> list[str]:
        cfg = self.config
        check_binds(cfg.binds, curve=cfg.curve_secret is not None)
        self._all_local = all(is_local_address(b) for b in cfg.binds)
        self._ctx = zmq.Context()
        r = self._ctx.socket(zmq.ROUTER)
        r.linger = 0
        # zmq drops a peer sending more than this, before buffering it. Set it above our own limit so
        # moderately oversized messages still get a structured too_large error the user can read.
        r.setsockopt(zmq.MAXMSGSIZE, 2 * cfg.max_message_bytes + (1 << 20))
        r.sndhwm = 10_000
        if any(b.startswith("tcp://[") for b in cfg.binds):
            r.ipv6 = True
        r.rcvhwm = 10_000
        if cfg.curve_secret is not None:
            pub, sec = load_secret(cfg.curve_secret)
            apply_server_keys(r, pub, sec)
        for b in cfg.binds:
            try:
                r.bind(b)
            except zmq.ZMQError as e:
                r.close(0)
                hint = " (another server may be running there: `talkrig generate --server ADDR` can use it, or pick another port)" if e.errno == zmq.EADDRINUSE else ""
                raise OSError(f"cannot bind {b}: {e.strerror}{hint}") from None
            self.endpoints.append(r.getsockopt_string(zmq.LAST_ENDPOINT))
        self._router = r
        self._wake_pull = self._ctx.socket(zmq.PULL)
        self._wake_pull.linger = 0
        self._wake_pull.bind(self._wake_addr)
        return list(self.endpoints)

    def _post(self, ev: Event) -> None:
        """Called from the worker thread: queue the event and wake the loop."""
        self._events.append(ev)
        sock = getattr(self._worker, "_wake_sock", None)
        if sock is None:  # created lazily in the worker thread: zmq sockets belong to one thread
            sock = self._ctx.socket(zmq.PUSH)
            sock.linger = 0
            sock.connect(self._wake_addr)
            self._worker._wake_sock = sock
        try:
            sock.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass  # the loop is already awake with a full pipe; it drains self._events anyway

    # -- main loop ---------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        if self._router is None:
            self.bind()
        cfg = self.config
        self._worker = EngineWorker(self.pipeline, self.queue, self._post, cfg.sample_rate, cfg.max_audio_seconds,
                                    cfg.progress_interval_s)
        self._worker.start()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_pull, zmq.POLLIN)
        last_housekeeping = 0.0
        try:
            while True:
                try:
                    ready = dict(poller.poll(100))
                except zmq.ZMQError as e:
                    if e.errno == zmq.EINTR:
                        continue
                    raise
                if self._router in ready:
                    self._drain_router()
                if self._wake_pull in ready:
                    while True:
                        try:
                            self._wake_pull.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                self._drain_events()
                if self._stop_request is not None:
                    mode, reason = self._stop_request
                    self._stop_request = None
                    self.request_stop(mode, reason)
                now = time.monotonic()
                if now - last_housekeeping > 0.25:
                    last_housekeeping = now
                    self._reap_orphans(now)
                if self.stopping and self._stop_done(now):
                    break
        finally:
            self._close()

    def stop_soon(self, mode: str = "cancel", reason: str = "server shutting down") -> None:
        """Safe from signal handlers and other threads: the loop acts on it within ~0.1 s."""
        self._stop_request = (mode, reason)

    def request_stop(self, mode: str = "cancel", reason: str = "server shutting down") -> dict[str, list[str]]:
        """Stop accepting jobs. mode "cancel": cancel queued and running jobs; "finish": run them all."""
        if self.stopping == "cancel" or (self.stopping == mode):
            return {"cancelled": [], "finishing": [j.id for j in self.jobs.values()]}
        self.stopping = mode
        self.stop_deadline = None
        cancelled: list[str] = []
        finishing: list[str] = []
        if mode == "cancel":
            for job in self.queue.drain():
                job.cancel_reason = reason
                self._terminal(job, "cancelled", P.make("cancelled", job.request_id, job=job.id, reason=reason))
                cancelled.append(job.id)
            for run in [j for j in self.jobs.values() if j.state == RUNNING]:
                run.cancel_reason = reason
                run.cancel.cancel()
                cancelled.append(run.id)
                self.stop_deadline = time.monotonic() + self.config.shutdown_grace_s
        else:
            finishing = [j.id for j in self.jobs.values()]
        log.info("shutting down (%s): cancelled %s, finishing %s", mode, cancelled or "none", finishing or "none")
        return {"cancelled": cancelled, "finishing": finishing}

    def _stop_done(self, now: float) -> bool:
        if not self.jobs:
            return True
        if self.stop_deadline is not None and now > self.stop_deadline:
            for job in list(self.jobs.values()):
                log.warning("job %s did not stop within %.0f s; abandoning it", job.id, self.config.shutdown_grace_s)
                self._terminal(job, "cancelled", P.make("cancelled", job.request_id, job=job.id,
                                                         reason="server shut down before the job could stop"))
            return True
        return False

    def _close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker.join(timeout=1.0)
        for s in (self._router, self._wake_pull):
            if s is not None:
                s.close(0)
        if self._ctx is not None and (self._worker is None or not self._worker.is_alive()):
            self._ctx.term()
        self.pipeline.close()  # the recogniser goes with the engine
        if self.stopping:
            ended = self.ended_while_stopping
            log.info("during shutdown: finished %s, failed %s, cancelled %s", ended[DONE] or "none",
                     ended[ERROR] or "none", ended[CANCELLED] or "none")
        log.info("server stopped (done %d, failed %d, cancelled %d)", self.counts[DONE], self.counts[ERROR],
                 self.counts[CANCELLED])

    # -- sending -----------------------------------------------------------------------------------
    def _send(self, identity: bytes, delimiter: bool, msg: Message) -> None:
        try:
            self._router.send_multipart([identity, *msg.to_frames(delimiter)], zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.debug("dropped a message to a client that is not reading")
        except zmq.ZMQError as e:
            log.debug("send failed: %s", e)

    def _send_job(self, job: Job, msg: Message) -> None:
        self._send(job.identity, job.delimiter, msg)

    # -- receiving ---------------------------------------------------------------------------------
    def _drain_router(self) -> None:
        for _ in range(_MAX_BATCH):
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._handle(frames)
            except Exception:  # a bug in a handler must not take the server down
                log.exception("internal error while handling a message")
                try:
                    self._send(frames[0].bytes, True, P.error_message(None, ErrorCode.INTERNAL, "internal server error"))
                except Exception:
                    pass

    def _handle(self, frames: list[zmq.Frame]) -> None:
        identity = frames[0].bytes
        now = time.monotonic()
        self.last_seen[identity] = now
        delimiter, body = P.split_frames(frames[1:])
        rid: str | None = None
        try:
            if not body:
                raise ProtocolError(ErrorCode.BAD_FRAME, "message has no header frame")
            header = P.unpack_header(body[0].buffer)
            r = header.get("id")
            rid = r if isinstance(r, str) and 0 < len(r) <= P.MAX_ID_LEN else None
            total = sum(len(f) for f in body)
            if total > self.config.max_message_bytes:
                raise ProtocolError(ErrorCode.TOO_LARGE, f"message is {total} bytes; this server accepts up to "
                                    f"{self.config.max_message_bytes} (restart it with a larger --max-message-mb)")
            msg = P.decode_message([body[0].buffer, *[f.buffer for f in body[1:]]])
            P.validate_request(msg.header)
            local = self._all_local or self._peer_local(frames[-1])
            self._handlers[msg.type](identity, delimiter, msg, local)
        except ProtocolError as e:
            log.debug("refused a message (%s): %s", e.code, e.message)
            self._send(identity, delimiter, P.error_message(rid, e.code, e.message, **e.details))

    def _peer_local(self, frame: zmq.Frame) -> bool:
        try:
            return is_local_peer(frame.get("Peer-Address"))
        except Exception:
            return False

    # -- handlers ----------------------------------------------------------------------------------
    def _reply(self, identity: bytes, delimiter: bool, req: Message, **fields: Any) -> None:
        self._send(identity, delimiter, P.make(req.type, req.id, **fields))

    def _on_hello(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        offered = req.header.get("versions") or [req.header["v"]]
        common = set(offered) & set(P.SUPPORTED_VERSIONS)
        if not common:
            raise ProtocolError(ErrorCode.VERSION_MISMATCH,
                                f"no common protocol version: client speaks {offered}, server {list(P.SUPPORTED_VERSIONS)}",
                                supported=list(P.SUPPORTED_VERSIONS))
        self._reply(identity, delimiter, req, version=max(common), server="talkrig", server_version=__version__,
                    instance=self.instance, engine=self.engine_name, heartbeat_s=self.config.heartbeat_s,
                    limits={"max_message_bytes": self.config.max_message_bytes,
                            "max_audio_seconds": self.config.max_audio_seconds, "max_queue": self.config.max_queue})

    def _on_list(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        from ..engine.registry import ENGINE_NAMES

        info = self.info
        # engines name their presets "style_presets" when "styles" describes the accepted forms (diffusion)
        styles = info.get("style_presets", info.get("styles", []))
        defaults = {k: v for k, v in asdict(GenerateOptions()).items() if k in P.OPTION_TYPES}
        self._reply(identity, delimiter, req, engine=self.engine_name, engines=list(ENGINE_NAMES), info=info,
                    styles=_plain(styles), options=_plain(defaults))

    def _on_status(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        run = self._worker.current if self._worker else None
        self._reply(
            identity, delimiter, req,
            instance=self.instance, engine=self.engine_name,
            model=self.info.get("model"), device=self.info.get("device"),
            running=run.summary() if run is not None else None,
            queue=[j.summary() for j in self.queue.snapshot()],
            counts=dict(self.counts), uptime_s=round(time.monotonic() - self.started, 3),
            shutting_down=self.stopping is not None, endpoints=self.endpoints, pid=os.getpid(),
            recogniser=self._recogniser_state(),
        )  # fmt: skip

    def _recogniser_state(self) -> dict[str, Any] | None:
        r = self.pipeline.recogniser
        return None if r is None else {"model": r.model_name, "loaded": r.loaded, "loads": r.loads}

    def _job_state(self, job_id: str) -> str:
        job = self.jobs.get(job_id)
        if job is not None:
            return job.state
        return self.finished.get(job_id, "unknown")

    def _on_ping(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        jobs = req.header.get("jobs") or []
        self._reply(identity, delimiter, req, instance=self.instance, time=time.time(),
                    jobs={j: self._job_state(j) for j in jobs}, queue_length=len(self.queue),
                    busy=bool(self._worker and self._worker.current))

    def _on_cancel(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        job_id = req.header["job"]
        job = self.queue.remove(job_id)
        if job is not None:
            job.cancel_reason = "cancelled by a client"
            self._terminal(job, "cancelled", P.make("cancelled", job.request_id, job=job.id, reason=job.cancel_reason))
            self._reply(identity, delimiter, req, job=job_id, state=CANCELLED)
            return
        job = self.jobs.get(job_id)
        if job is not None:  # running: the worker stops at the engine's next check
            job.cancel_reason = "cancelled by a client"
            job.cancel.cancel()
            self._reply(identity, delimiter, req, job=job_id, state="cancelling")
            return
        if job_id in self.finished:
            self._reply(identity, delimiter, req, job=job_id, state=self.finished[job_id])
            return
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no job {job_id!r} on this server (finished long ago or never existed)")

    def _on_shutdown(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        if not local:
            raise ProtocolError(ErrorCode.FORBIDDEN, "shutdown is only accepted from this machine (loopback or ipc)")
        mode = req.header.get("mode") or "cancel"
        which = self.request_stop(mode, reason="server shut down by a client")
        self._reply(identity, delimiter, req, mode=mode, **which)

    def _on_generate(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        h = req.header
        rid = req.id
        # A re-sent request (client retry after a timeout): route to the new socket, do not run twice.
        old = self.by_request.get(rid)
        if old is not None:
            log.info("job %s: request %s re-sent by its client (retry); not queued again", old.id, rid)
            old.identity, old.delimiter = identity, delimiter
            self._reply_accepted(old, req)
            return
        if rid in self.replay:
            job, msg = self.replay[rid]
            log.info("job %s: request %s re-sent after it ended; answering again", job.id, rid)
            self._send(identity, delimiter, P.make("accepted", rid, job=job.id, position=0, queue_length=len(self.queue)))
            self._send(identity, delimiter, msg)
            return
        if self.stopping:
            raise ProtocolError(ErrorCode.SHUTTING_DOWN, "the server is shutting down and takes no new jobs")
        if h.get("audio_path") is not None and not local:
            raise ProtocolError(ErrorCode.FORBIDDEN, "audio_path is only accepted from this machine; send the audio bytes")
        audio = P.decode_blob(h["audio"], req.frames, "audio") if h.get("audio") is not None else None
        if audio is not None and len(audio) == 0:
            raise ProtocolError(ErrorCode.BAD_AUDIO, "audio is empty (0 bytes)")
        referenced = 1 if audio is not None else 0
        opts_d = dict(h.get("options") or {}) if req.type == "generate" else {}
        if opts_d.get("style_mix") is not None:
            opts_d["style_mix"] = tuple(opts_d["style_mix"])
        try:
            options = GenerateOptions.from_dict(opts_d)
        except (TypeError, ValueError) as e:
            raise ProtocolError(ErrorCode.BAD_VALUE, str(e)) from None
        if h.get("style_reference") is not None:
            ref = h["style_reference"]
            ref_motion: FaceMotion = P.decode_motion(ref, req.frames, "style_reference")
            options.style_reference = ref_motion
            referenced += 2
        if len(req.frames) != referenced:
            raise ProtocolError(ErrorCode.BAD_FRAME,
                                f"generate has {len(req.frames)} payload frame(s) but references {referenced}")
        job = Job(request_id=rid, identity=identity, delimiter=delimiter, options=options,
                  audio=audio, audio_path=h.get("audio_path"), want_progress=h.get("progress", True) is not False,
                  heartbeat_s=h.get("heartbeat_s"), kind=req.type)
        try:
            self.queue.put(job)
        except QueueFull as e:
            raise ProtocolError(ErrorCode.BUSY, str(e)) from None
        self.jobs[job.id] = job
        self.by_request[rid] = job
        log.info("job %s queued (request %s, %s, queue %d)", job.id, rid,
                 f"{len(audio)} bytes" if audio is not None else job.audio_path, len(self.queue))
        self._reply_accepted(job, req)

    def _reply_accepted(self, job: Job, req: Message) -> None:
        snap = self.queue.snapshot()
        pos = next((i for i, j in enumerate(snap) if j is job), 0)
        self._send_job(job, P.make("accepted", req.id, job=job.id, state=job.state, position=pos,
                                   queue_length=len(snap), instance=self.instance,
                                   heartbeat_s=self.config.heartbeat_s))

    # -- worker events -----------------------------------------------------------------------------
    def _drain_events(self) -> None:
        while self._events:
            ev = self._events.popleft()
            job = ev.job
            if job.id not in self.jobs:
                continue  # already answered (e.g. abandoned at shutdown)
            if ev.kind == "started":
                log.info("job %s started (waited %.2f s)", job.id, (job.started or 0) - job.submitted)
                if job.want_progress:
                    self._send_job(job, P.make("progress", job.request_id, job=job.id, fraction=0.0, stage="started"))
            elif ev.kind == "progress":
                self._send_job(job, P.make("progress", job.request_id, job=job.id, fraction=job.fraction,
                                           stage=job.stage))
            elif ev.kind == "result":
                frames: list[Any] = []
                enc = P.encode_motion(ev.motion, frames)
                timing = {k: round(v, 6) for k, v in ev.timing.items()}
                self._terminal(job, DONE, P.make("result", job.request_id, frames, job=job.id, motion=enc,
                                                 timing=timing, audio_seconds=job.audio_seconds))
            elif ev.kind == "transcript":
                timing = {k: round(v, 6) for k, v in ev.timing.items()}
                self._terminal(job, DONE, P.make("transcript", job.request_id, job=job.id, transcript=ev.transcript,
                                                 timing=timing, audio_seconds=job.audio_seconds))
            elif ev.kind == "error":
                self._terminal(job, ERROR, P.error_message(job.request_id, ev.code, ev.message, job=job.id))
            elif ev.kind == "cancelled":
                self._terminal(job, CANCELLED, P.make("cancelled", job.request_id, job=job.id,
                                                      reason=ev.message or job.cancel_reason))

    def _terminal(self, job: Job, state: str, msg: Message) -> None:
        """Send a job's one final message and forget it."""
        job.state = state
        job.finished = job.finished or time.monotonic()
        self.jobs.pop(job.id, None)
        self.by_request.pop(job.request_id, None)
        self.finished[job.id] = state
        while len(self.finished) > _FINISHED_KEEP:
            self.finished.popitem(last=False)
        self.replay[job.request_id] = (job, msg)
        while len(self.replay) > _REPLAY_KEEP:
            self.replay.popitem(last=False)
        self.counts[state] = self.counts.get(state, 0) + 1
        if self.stopping:
            self.ended_while_stopping.setdefault(state, []).append(job.id)
        self._send_job(job, msg)
        total = job.finished - job.submitted
        run = job.finished - job.started if job.started else 0.0
        audio = f"{job.audio_seconds:.1f} s audio" if job.audio_seconds is not None else "audio not decoded"
        if state == DONE:
            log.info("job %s done: %s in %.2f s (running %.2f s)", job.id, audio, total, run)
        elif state == ERROR:
            log.info("job %s failed after %.2f s: %s", job.id, total, msg.header.get("message"))
        else:
            log.info("job %s cancelled after %.2f s: %s", job.id, total, msg.header.get("reason"))

    def _reap_orphans(self, now: float) -> None:
        """Cancel jobs whose client stopped sending heartbeats (closed Blender, killed script)."""
        for job in list(self.jobs.values()):
            if not job.heartbeat_s or job.cancel.cancelled:
                continue  # no heartbeat promised, or already being cancelled (do not log it every turn)
            silent = now - self.last_seen.get(job.identity, job.submitted)
            if silent > self.config.orphan_grace * job.heartbeat_s + 1.0 and job.state in (QUEUED, RUNNING):
                reason = f"the client stopped sending heartbeats ({silent:.1f} s silent)"
                log.info("job %s: %s; cancelling", job.id, reason)
                job.cancel_reason = reason
                if self.queue.remove(job.id) is not None:
                    self._terminal(job, CANCELLED, P.make("cancelled", job.request_id, job=job.id, reason=reason))
                else:
                    job.cancel.cancel()
        if len(self.last_seen) > 4096:  # forget long-gone clients
            live = {j.identity for j in self.jobs.values()}
            cutoff = now - 600
            self.last_seen = {k: t for k, t in self.last_seen.items() if t > cutoff or k in live}
