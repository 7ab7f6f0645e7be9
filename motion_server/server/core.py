"""The socket loop: one ROUTER socket, requests answered at once, jobs handed to the engine worker.

The loop never blocks on the engine, so hello/status/ping/cancel are answered while a job runs.
Every request is validated (motion_server.protocol) before it is acted on; anything malformed gets a
structured error and the loop goes on.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
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
_REPLAY_MAX_BYTES = 64 << 20  # ... and at most this many bytes of them (results can be tens of MB)
_GUARD_EVERY_S = 0.02  # how often the loop compares its RSS with the memory guard
_GUARD_MARGIN_MB = 640.0  # default guard: the RSS after start-up plus this


def _rss_mb() -> float | None:
    """This process's resident memory in MB (Linux /proc), or None where it cannot be read cheaply."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)
    except (OSError, ValueError, IndexError):
        return None


def _malloc_trim() -> None:
    """Hand freed heap pages back to the system now (glibc), so RSS shows what is really in use."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _printable(text: str, limit: int = 64) -> str:
    """For log lines: a peer's string with control characters escaped, so it cannot forge lines."""
    return text[:limit] if text.isprintable() else repr(text[:limit])


def _anonymous(identity: bytes) -> bool:
    """zmq names sockets without a routing id of their own (and pipes it replaced on handover) with a
    leading zero byte; client-chosen routing ids never start with one."""
    return identity[:1] == b"\x00"


def _fingerprint(req: Message) -> bytes:
    """The request's bytes, hashed: identical for a client's re-send of the same message."""
    h = hashlib.sha256(P.pack_header(req.header))
    for f in req.frames:
        h.update(memoryview(f).cast("B"))
    return h.digest()


def _msg_bytes(msg: Message) -> int:
    return sum(memoryview(f).nbytes for f in msg.frames)


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
        # Jobs belong to the client (socket identity) that submitted them: a request id is only unique
        # per client, and only the owner sees, retries or cancels a job (unless config.shared_jobs).
        self.by_request: dict[tuple[bytes, str], Job] = {}
        self.finished: OrderedDict[str, tuple[str, bytes]] = OrderedDict()  # job id -> (state, owner)
        self.replay: OrderedDict[tuple[bytes, str], tuple[Job, Message]] = OrderedDict()  # -> terminal msg
        self._replay_bytes = 0
        self.memory_limit_mb: float | None = None  # set when serving starts (see _guard_memory)
        self.connection_drops = 0
        self._guard_at = 0.0
        self.last_seen: dict[bytes, float] = {}
        self.counts = {DONE: 0, ERROR: 0, CANCELLED: 0}
        self.stopping: str | None = None  # None | "cancel" | "finish"
        self.ended_while_stopping: dict[str, list[str]] = {DONE: [], ERROR: [], CANCELLED: []}
        self.stop_deadline: float | None = None
        self._events: deque[Event] = deque()
        self._stop_request: tuple[str, str] | None = None
        self._all_local = True
        self._ipc_local = True
        self._ctx: zmq.Context | None = None
        self._router: zmq.Socket | None = None
        self._wake_pull: zmq.Socket | None = None
        self._wake_addr = f"inproc://talkrig-wake-{self.instance}"
        self._wake_push: zmq.Socket | None = None  # the worker's side of the wake pipe (any thread, locked)
        self._post_lock = threading.Lock()
        self._posting_closed = False
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
        self._ipc_local = not any(b.startswith("ipc://@") for b in cfg.binds)
        self._ctx = zmq.Context()
        r = self._ctx.socket(zmq.ROUTER)
        r.linger = 0
        # zmq drops a peer sending a frame above this before buffering it (it limits frames, not whole
        # messages). 1 MiB above our own limit so a slightly oversized message still gets a structured
        # too_large error the user can read.
        r.setsockopt(zmq.MAXMSGSIZE, cfg.max_message_bytes + (1 << 20))
        r.sndhwm = 10_000
        if any(b.startswith("tcp://[") for b in cfg.binds):
            r.ipv6 = True
        r.rcvhwm = 64  # complete messages waiting per peer; the loop reads them as fast as they come
        # A client keeps its routing id across reconnects (the reference client sets one), so its jobs
        # and their events follow it to the new connection.
        r.router_handover = 1
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
        """Called from the worker's threads: queue the event and wake the loop. A zmq socket is not
        thread-safe, so the one wake socket is only used under a lock."""
        self._events.append(ev)
        with self._post_lock:
            if self._posting_closed:
                return
            if self._wake_push is None:
                self._wake_push = self._ctx.socket(zmq.PUSH)
                self._wake_push.linger = 0
                self._wake_push.connect(self._wake_addr)
            try:
                self._wake_push.send(b"", zmq.NOBLOCK)
            except zmq.Again:
                pass  # the loop is already awake with a full pipe; it drains self._events anyway

    # -- main loop ---------------------------------------------------------------------------------
    def serve_forever(self) -> None:
        if self._router is None:
            self.bind()
        cfg = self.config
        self._worker = EngineWorker(self.pipeline, self.queue, self._post, cfg.sample_rate, cfg.max_audio_seconds,
                                    cfg.progress_interval_s, cfg.decode_timeout_s, cfg.max_batch, cfg.max_running)
        self._worker.start()
        base = _rss_mb()
        if base is not None:
            self.memory_limit_mb = cfg.max_memory_mb or base + _GUARD_MARGIN_MB
            log.info("memory guard: %.0f MB (now %.0f MB)", self.memory_limit_mb, base)
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_pull, zmq.POLLIN)
        last_housekeeping = 0.0
        try:
            while True:
                try:
                    ready = dict(poller.poll(50))
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
                if now - self._guard_at > _GUARD_EVERY_S:
                    self._guard_at = now
                    self._guard_memory()
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

    def _guard_memory(self) -> None:
        """libzmq buffers a multipart message until its last frame arrives, with no limit on the frames
        of a message that never ends, and whole messages up to MAXMSGSIZE per frame from every peer at
        once. Nothing names the peer doing it, so above the limit every connection is dropped (unbind +
        bind frees those buffers); jobs keep running and clients reconnect on their own."""
        if self.memory_limit_mb is None:
            return
        rss = _rss_mb()
        if rss is None or rss <= self.memory_limit_mb:
            return
        self.connection_drops += 1
        log.warning("memory guard: %.0f MB resident, limit %.0f MB: dropping every connection (a peer is "
                    "sending more than the limits allow); jobs continue", rss, self.memory_limit_mb)
        r = self._router
        for ep in self.endpoints:
            try:
                r.unbind(ep)
            except zmq.ZMQError as e:
                log.warning("memory guard: cannot unbind %s: %s", ep, e.strerror)
        # measure while nobody can connect: what is left is not network buffers
        deadline = time.monotonic() + 0.3
        after = rss
        while time.monotonic() < deadline:
            _malloc_trim()
            after = _rss_mb() or after
            if after < 0.8 * self.memory_limit_mb:
                break
            time.sleep(0.01)
        for ep in self.endpoints:
            self._rebind(ep)
        if after > 0.8 * self.memory_limit_mb:
            # the engine itself holds this (a big model, a long clip): dropping clients again would
            # not help, so the guard moves above it
            self.memory_limit_mb = after + _GUARD_MARGIN_MB
            log.warning("memory guard: %.0f MB stay in use without connections (the engine's own); limit "
                        "raised to %.0f MB (set --max-memory-mb above the engine's working memory)", after,
                        self.memory_limit_mb)

    def _rebind(self, ep: str) -> None:
        deadline = time.monotonic() + 5.0
        path = ep[len("ipc://"):] if ep.startswith("ipc:///") else None
        while path is not None and os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)  # the old listener removes its socket file; binding first would lose ours
        while True:
            try:
                self._router.bind(ep)
                return
            except zmq.ZMQError as e:
                if time.monotonic() > deadline:
                    log.error("memory guard: cannot listen on %s again: %s", ep, e.strerror)
                    return
                time.sleep(0.01)

    def _close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker.join(timeout=1.0)
        with self._post_lock:
            self._posting_closed = True
            if self._wake_push is not None:
                self._wake_push.close(0)
        for s in (self._router, self._wake_pull):
            if s is not None:
                s.close(0)
        if self._ctx is not None:
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
        for identity, delimiter in job.watchers:
            self._send(identity, delimiter, msg)

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
            rid = r if isinstance(r, str) and 0 < len(r) <= P.MAX_ID_LEN and r.isprintable() else None
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
            return is_local_peer(frame.get("Peer-Address"), self._ipc_local)
        except Exception:
            return False

    # -- job identity and authorisation -------------------------------------------------------------
    def _may_act_on(self, identity: bytes, owner: bytes, job: Job | None = None) -> bool:
        """The one ownership rule for every request that names a job (cancel, ping, status, and request
        types to come): a client acts only on its own jobs unless the server shares them. A job whose
        owner is anonymous (a socket without a routing id of its own) is also its watchers'."""
        if self.config.shared_jobs or identity == owner:
            return True
        return job is not None and _anonymous(owner) and any(w == identity for w, _ in job.watchers)

    def _job_for(self, identity: bytes, job_id: str) -> Job | None:
        """A live job this client may act on, or None (someone else's job looks unknown, not forbidden,
        so job ids cannot be probed)."""
        job = self.jobs.get(job_id)
        return job if job is not None and self._may_act_on(identity, job.identity, job) else None

    def _finished_for(self, identity: bytes, job_id: str) -> str | None:
        ended = self.finished.get(job_id)
        return ended[0] if ended is not None and self._may_act_on(identity, ended[1]) else None

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
                            "max_audio_seconds": self.config.max_audio_seconds, "max_queue": self.config.max_queue,
                            "max_queued_bytes": self.config.max_queued_bytes,
                            "max_client_jobs": self.config.max_client_jobs,
                            "max_client_bytes": self.config.max_client_bytes})

    def _on_list(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        from ..engine.registry import ENGINE_NAMES

        info = self.info if local else {**self.info, "model": self._model_name(False)}
        # engines name their presets "style_presets" when "styles" describes the accepted forms (diffusion)
        styles = info.get("style_presets", info.get("styles", []))
        defaults = {k: v for k, v in asdict(GenerateOptions()).items() if k in P.OPTION_TYPES}
        self._reply(identity, delimiter, req, engine=self.engine_name, engines=list(ENGINE_NAMES), info=info,
                    styles=_plain(styles), options=_plain(defaults))

    def _on_status(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        running = self._worker.running_jobs() if self._worker else []
        snap = self.queue.snapshot()
        mine = [j for j in snap if self._may_act_on(identity, j.identity, j)]
        mine_running = [j.summary() for j in running if self._may_act_on(identity, j.identity, j)]
        fields: dict[str, Any] = dict(
            instance=self.instance, engine=self.engine_name,
            model=self._model_name(local), device=self.info.get("device"),
            running=mine_running[0] if mine_running else None, running_jobs=mine_running,
            queue=[j.summary() for j in mine], queue_length=len(snap), busy=bool(running),
            batching=self._worker.batch_stats() if self._worker else None,
            counts=dict(self.counts), uptime_s=round(time.monotonic() - self.started, 3),
            shutting_down=self.stopping is not None, recogniser=self._recogniser_state(),
        )  # fmt: skip
        if local:  # where it listens and its pid are this machine's business
            fields.update(endpoints=self.endpoints, pid=os.getpid())
        self._reply(identity, delimiter, req, **fields)

    def _recogniser_state(self) -> dict[str, Any] | None:
        r = self.pipeline.recogniser
        return None if r is None else {"model": r.model_name, "loaded": r.loaded, "loads": r.loads}

    def _model_name(self, local: bool) -> Any:
        """The engine's model: its path for local peers, only its last component for remote ones."""
        model = self.info.get("model")
        if local or not isinstance(model, str):
            return model
        return os.path.basename(model.rstrip("/\\")) or model

    def _job_state(self, identity: bytes, job_id: str) -> str:
        job = self._job_for(identity, job_id)
        if job is not None:
            return job.state
        return self._finished_for(identity, job_id) or "unknown"

    def _on_ping(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        jobs = req.header.get("jobs") or []
        self._reply(identity, delimiter, req, instance=self.instance, time=time.time(),
                    jobs={j: self._job_state(identity, j) for j in jobs}, queue_length=len(self.queue),
                    busy=bool(self._worker and self._worker.running_jobs()))

    def _on_cancel(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        job_id = req.header["job"]
        job = self.queue.remove(job_id) if self._job_for(identity, job_id) is not None else None
        if job is not None:
            job.cancel_reason = "cancelled by a client"
            self._terminal(job, "cancelled", P.make("cancelled", job.request_id, job=job.id, reason=job.cancel_reason))
            self._reply(identity, delimiter, req, job=job_id, state=CANCELLED)
            return
        job = self._job_for(identity, job_id)
        if job is not None:  # running: the worker stops at the engine's next check
            job.cancel_reason = "cancelled by a client"
            job.cancel.cancel()
            self._reply(identity, delimiter, req, job=job_id, state="cancelling")
            return
        ended = self._finished_for(identity, job_id)
        if ended is not None:
            self._reply(identity, delimiter, req, job=job_id, state=ended)
            return
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no job {job_id!r} of yours on this server (finished long ago, "
                            "never existed, or submitted by another client)")

    def _on_shutdown(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        if not local:
            raise ProtocolError(ErrorCode.FORBIDDEN, "shutdown is only accepted from this machine (loopback or ipc)")
        mode = req.header.get("mode") or "cancel"
        which = self.request_stop(mode, reason="server shut down by a client")
        self._reply(identity, delimiter, req, mode=mode, **which)

    def _on_generate(self, identity: bytes, delimiter: bool, req: Message, local: bool) -> None:
        h = req.header
        rid = req.id
        key = (identity, rid)
        # A re-sent request (client retry after a timeout, same client identity): answer again, do not
        # run twice. Another client's request with the same id is a different request.
        old = self.by_request.get(key)
        if old is not None:
            log.info("job %s: request %s re-sent by its client (retry); not queued again", old.id, _printable(rid))
            if old.identity == identity:
                old.delimiter = delimiter
            self._reply_accepted(old, req, identity, delimiter)
            return
        fp = _fingerprint(req)
        twin = next((j for (_, r), j in self.by_request.items() if r == rid and j.fingerprint == fp), None)
        if twin is not None:
            # The very same request from another connection: a retry whose first copy came through a
            # pipe zmq renamed when the client reconnected (or an anonymous socket's retry). The sender
            # asked for exactly this computation, so it gets the job's events too; nothing is mixed.
            log.info("job %s: request %s re-sent from another connection; not queued again", twin.id,
                     _printable(rid))
            self._watch(twin, identity, delimiter)
            self._reply_accepted(twin, req, identity, delimiter)
            return
        ended = self.replay.get(key) or next(((j, m) for (_, r), (j, m) in self.replay.items()
                                              if r == rid and j.fingerprint == fp), None)
        if ended is not None:
            job, msg = ended
            log.info("job %s: request %s re-sent after it ended; answering again", job.id, _printable(rid))
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
            ref_motion: FaceMotion = P.decode_motion(ref, req.frames, "style_reference", fps_range=P.STYLE_REFERENCE_FPS,
                                                     max_frames=P.STYLE_REFERENCE_MAX_FRAMES)
            options.style_reference = ref_motion
            referenced += 2
        if len(req.frames) != referenced:
            raise ProtocolError(ErrorCode.BAD_FRAME,
                                f"generate has {len(req.frames)} payload frame(s) but references {referenced}")
        self._check_quota(identity, len(audio) if audio is not None else 0)
        job = Job(request_id=rid, identity=identity, delimiter=delimiter, options=options,
                  audio=audio, audio_path=h.get("audio_path"), want_progress=h.get("progress", True) is not False,
                  heartbeat_s=h.get("heartbeat_s"), fingerprint=fp, kind=req.type)
        try:
            self.queue.put(job)
        except QueueFull as e:
            raise ProtocolError(ErrorCode.BUSY, str(e)) from None
        self.jobs[job.id] = job
        self.by_request[key] = job
        log.info("job %s queued (request %s, %s, queue %d)", job.id, _printable(rid),
                 f"{len(audio)} bytes" if audio is not None else "a local file", len(self.queue))
        self._reply_accepted(job, req, identity, delimiter)

    def _watch(self, job: Job, identity: bytes, delimiter: bool) -> None:
        """Add a connection that sent the same request. A client with a routing id of its own takes
        over a job whose owner is anonymous (zmq's name for the replaced pipe of that very client)."""
        self.by_request[(identity, job.request_id)] = job
        if _anonymous(job.identity) and not _anonymous(identity):
            job.watchers.append((job.identity, job.delimiter))
            job.identity, job.delimiter = identity, delimiter
        elif identity != job.identity and all(w != identity for w, _ in job.watchers):
            job.watchers.append((identity, delimiter))

    def _check_quota(self, identity: bytes, nbytes: int) -> None:
        """Per-client and total limits on what queued jobs hold, so no client (or crowd of sockets) can
        make the server keep gigabytes of uploads; each refusal is ``busy`` and says which limit."""
        cfg = self.config
        cap = min(cfg.max_client_bytes, cfg.max_queued_bytes)
        if nbytes > cap:  # could never be queued: not "busy", which would invite retries
            raise ProtocolError(ErrorCode.TOO_LARGE, f"the audio is {nbytes} bytes; this server queues at most {cap} "
                                "per client (compress it, split it, or restart the server with larger "
                                "--max-client-mb / --max-queued-mb)")
        queued = self.queue.snapshot()
        total = sum(j.audio_bytes for j in queued)
        mine = [j for j in self.jobs.values() if j.identity == identity]
        mine_bytes = sum(j.audio_bytes for j in mine if j.state == QUEUED)
        if len(mine) >= cfg.max_client_jobs:
            raise ProtocolError(ErrorCode.BUSY, f"you have {len(mine)} jobs queued or running; this server takes "
                                f"at most {cfg.max_client_jobs} per client: wait for one to finish")
        if mine_bytes + nbytes > cfg.max_client_bytes:
            raise ProtocolError(ErrorCode.BUSY, f"your queued jobs hold {mine_bytes + nbytes} bytes of audio with "
                                f"this one; at most {cfg.max_client_bytes} per client: wait for one to finish")
        if total + nbytes > cfg.max_queued_bytes:
            raise ProtocolError(ErrorCode.BUSY, f"the queue holds {total} bytes of audio; at most "
                                f"{cfg.max_queued_bytes} in all: retry later")

    def _reply_accepted(self, job: Job, req: Message, identity: bytes, delimiter: bool) -> None:
        snap = self.queue.snapshot()
        pos = next((i for i, j in enumerate(snap) if j is job), 0)
        self._send(identity, delimiter, P.make("accepted", req.id, job=job.id, state=job.state, position=pos,
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
        key = (job.identity, job.request_id)
        self.by_request.pop(key, None)
        for w, _ in job.watchers:
            self.by_request.pop((w, job.request_id), None)
        job.audio = None  # a cancelled queued job still held its upload
        self.finished[job.id] = (state, job.identity)
        while len(self.finished) > _FINISHED_KEEP:
            self.finished.popitem(last=False)
        old = self.replay.pop(key, None)
        if old is not None:
            self._replay_bytes -= _msg_bytes(old[1])
        self.replay[key] = (job, msg)
        self._replay_bytes += _msg_bytes(msg)
        while self.replay and (len(self.replay) > _REPLAY_KEEP or self._replay_bytes > _REPLAY_MAX_BYTES):
            self._replay_bytes -= _msg_bytes(self.replay.popitem(last=False)[1][1])
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
