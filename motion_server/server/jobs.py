"""Jobs and the FIFO job queue shared by the socket loop (producer) and the engine worker (consumer)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rig_mapping import FaceMotion

from ..engine.base import CancelToken, GenerateOptions

QUEUED, RUNNING, DONE, ERROR, CANCELLED = "queued", "running", "done", "error", "cancelled"
TERMINAL = (DONE, ERROR, CANCELLED)


def new_job_id() -> str:
    return "j" + uuid.uuid4().hex[:15]


@dataclass(eq=False)
class Job:
    request_id: str
    identity: bytes  # the ROUTER identity of the client that owns the job (events go there)
    delimiter: bool  # whether that client frames messages with an empty delimiter (REQ style)
    options: GenerateOptions
    audio: Any = None  # bytes-like file contents, or None when audio_path is used
    audio_path: str | None = None
    want_progress: bool = True
    heartbeat_s: float | None = None
    id: str = field(default_factory=new_job_id)
    state: str = QUEUED
    fraction: float = 0.0
    stage: str = "queued"
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    finished: float | None = None
    cancel: CancelToken = field(default_factory=CancelToken)
    cancel_reason: str = "cancelled by a client"
    audio_seconds: float | None = None
    kind: str = "generate"  # or "transcribe": the request type that made the job
    audio_bytes: int = 0  # size of the upload while the job holds it (for the queue quotas)
    fingerprint: bytes = b""  # hash of the request's frames: an identical re-send is the same request
    # other connections that sent this very request (a retry whose first copy arrived through a pipe
    # zmq renamed on handover, or an anonymous socket's retry): they receive the job's events too
    watchers: list[tuple[bytes, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.audio is not None:
            self.audio_bytes = memoryview(self.audio).nbytes

    def summary(self) -> dict[str, Any]:
        now = time.monotonic()
        d: dict[str, Any] = {"job": self.id, "state": self.state, "fraction": self.fraction, "stage": self.stage}
        d["waiting_s"] = round((self.started or now) - self.submitted, 3)
        if self.started is not None:
            d["elapsed_s"] = round((self.finished or now) - self.started, 3)
        return d


class QueueFull(Exception):
    pass


class JobQueue:
    """FIFO of queued jobs. put/remove from the socket loop, get from the worker thread."""

    def __init__(self, maxlen: int) -> None:
        self._q: deque[Job] = deque()
        self._cv = threading.Condition()
        self.maxlen = maxlen
        self.wake = threading.Event()  # set on every put (the worker waits on it with its other news)

    def put(self, job: Job) -> int:
        with self._cv:
            if len(self._q) >= self.maxlen:
                raise QueueFull(f"the job queue is full ({self.maxlen} jobs); retry later")
            self._q.append(job)
            self._cv.notify()
            self.wake.set()
            return len(self._q) - 1

    def get(self, timeout: float) -> Job | None:
        with self._cv:
            if not self._q:
                self._cv.wait(timeout)
            if not self._q:
                return None
            job = self._q.popleft()
            # mark under the lock so a concurrent cancel sees either "queued and in the deque" or "running"
            job.state, job.started, job.stage = RUNNING, time.monotonic(), "starting"
            return job

    def remove(self, job_id: str) -> Job | None:
        with self._cv:
            for j in self._q:
                if j.id == job_id:
                    self._q.remove(j)
                    return j
        return None

    def drain(self) -> list[Job]:
        with self._cv:
            jobs = list(self._q)
            self._q.clear()
            return jobs

    def snapshot(self) -> list[Job]:
        with self._cv:
            return list(self._q)

    def __len__(self) -> int:
        return len(self._q)


@dataclass
class Event:
    """Worker -> socket loop. kind: started | progress | result | transcript | error | cancelled."""

    kind: str
    job: Job
    motion: FaceMotion | None = None
    code: str = ""
    message: str = ""
    timing: dict[str, float] = field(default_factory=dict)
    transcript: dict[str, Any] | None = None
