"""The engine worker: runs jobs, packing the diffusion windows of concurrent jobs into shared forwards.

One scheduler thread owns the engine's batcher (``motion_server.model.batching``): every turn it admits
queued jobs (at most ``max_running`` at once), and runs one denoiser forward filled round-robin with
windows of every sampling job, so a short job finishes long before a long one that started earlier. What
happens once per job runs beside it on a small thread pool: decoding, speech recognition, features, audio
encoding and style (``MotionPipeline.begin``) before sampling, and post-processing after. Progress,
cancel and errors stay per job. Engines that cannot batch (procedural, energy, a user's engine) and
transcription requests run whole on the pool, one job at a time for such engines, as a batch of one.

The socket loop never waits for the worker; the worker reports through ``post`` (thread-safe), which
queues an event and wakes the loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig_mapping import FaceMotion, MotionError

from ..audio import AudioError, load_audio
from ..audio.io import AudioTooLong
from ..engine.base import Cancelled
from ..pipeline import MotionPipeline
from ..protocol import ErrorCode
from ..transcribe.recogniser import RecogniserError
from .jobs import Event, Job, JobQueue

log = logging.getLogger("talkrig.server")

# threads for per-job work beside the shared forwards: two, so a short job's decoding and audio encoding
# need not wait for a long job's speech recognition
PREP_THREADS = 2


@dataclass(eq=False)
class _Sampling:
    """A job whose windows are in the batcher."""

    job: Job
    task: Any  # a motion_server.pipeline.PipelineTask
    t0: float  # when the job started
    t1: float  # when its audio was decoded


class EngineWorker(threading.Thread):
    def __init__(
        self,
        pipeline: MotionPipeline,
        queue: JobQueue,
        post: Callable[[Event], None],
        sample_rate: int,
        max_audio_seconds: float,
        progress_interval_s: float,
        decode_timeout_s: float = 120.0,
        max_batch: int | None = None,
        max_running: int = 8,
    ) -> None:
        super().__init__(name="talkrig-engine", daemon=True)
        self.pipeline = pipeline
        self.queue = queue
        self.post = post
        self.sr = sample_rate
        self.max_audio_seconds = max_audio_seconds
        self.progress_interval_s = progress_interval_s
        self.decode_timeout_s = decode_timeout_s
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        # an engine without batching runs one job at a time, as every engine did before batching
        self.batcher = pipeline.engine.batcher(max_batch or None) if pipeline.batches else None
        self.max_running = max_running if self.batcher is not None else 1
        self._running: dict[str, Job] = {}  # admitted, not ended (preparing, sampling or finishing)
        self._lock = threading.Lock()  # guards _running (the socket loop reads it for status)
        self._ready: deque[_Sampling] = deque()  # begun on the pool, waiting to enter the batcher
        self._sampling: dict[Any, _Sampling] = {}  # TimelineSampling -> its job (worker thread only)
        self._wake = queue.wake  # set when a job is queued or a prepared one is ready
        self._stop_event = threading.Event()

    # -- what the socket loop reads -------------------------------------------------------------------
    def running_jobs(self) -> list[Job]:
        """Jobs admitted and not ended, oldest first."""
        with self._lock:
            return list(self._running.values())

    def batch_stats(self) -> dict[str, Any] | None:
        b = self.batcher
        if b is None:
            return None
        stats = {"max_batch": b.max_batch, "max_running": self.max_running, "forwards": b.forwards,
                 "largest_batch": b.largest, "most_jobs": b.most_runs}
        packer = getattr(self.pipeline.engine, "encoder_packer", None)
        if packer is not None:  # speech-encoder windows packed across jobs (a GPU)
            stats.update(encoder_forwards=packer.forwards, encoder_most_requests=packer.largest)
        return stats

    def stop(self) -> None:
        self._stop_event.set()
        self._wake.set()

    # -- the scheduler thread ---------------------------------------------------------------------------
    def run(self) -> None:
        threads = getattr(self.pipeline.engine, "compute_threads", None)
        if self.batcher is not None:
            log.info("batching: up to %d windows per forward, %d jobs at once", self.batcher.max_batch,
                     self.max_running)
        else:
            log.info("this engine does not batch: one job at a time")
        pool = ThreadPoolExecutor(getattr(self.pipeline.engine, "prep_threads", None) or PREP_THREADS,
                                  thread_name_prefix="talkrig-prep")
        try:
            with threads() if callable(threads) else contextlib.nullcontext():
                while not self._stop_event.is_set():
                    self._wake.clear()
                    try:
                        self._turn(pool)
                    except BaseException:  # never let the worker die: the server must keep serving
                        log.exception("unexpected failure in the engine worker")
                        for s in list(self._sampling.values()):
                            self._drop(s)
                            self._end(s.job, Event("error", s.job, code=ErrorCode.INTERNAL,
                                                   message="internal server error"))
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _turn(self, pool: ThreadPoolExecutor) -> None:
        while len(self._running) < self.max_running:
            job = self.queue.get(timeout=0)
            if job is None:
                break
            with self._lock:
                self._running[job.id] = job
            pool.submit(self._guarded, job, self._prepare, job)
        while self._ready:
            s = self._ready.popleft()
            self._sampling[s.task.sampling] = s
            self.batcher.add(s.task.sampling)
        for s in [s for s in self._sampling.values() if s.job.cancel.cancelled]:
            self._drop(s)  # at once, not at its next turn in a batch
            self._end(s.job, self._outcome(s.job, Cancelled("cancelled")))
        if not self._sampling:
            self._wake.wait(0.2)
            return
        for run, exc in self.batcher.step():
            s = self._sampling.pop(run)
            if exc is None:
                pool.submit(self._guarded, s.job, self._complete, s)
            else:
                self._end(s.job, self._outcome(s.job, exc))

    def _drop(self, s: _Sampling) -> None:
        self._sampling.pop(s.task.sampling, None)
        self.batcher.remove(s.task.sampling)

    # -- per-job work (pool threads) ----------------------------------------------------------------------
    def _guarded(self, job: Job, fn: Callable[..., None], *args: Any) -> None:
        # a job's small work at the engine's own thread count; its big forwards take the cores that are
        # free (the diffusion engine's CoreShare), so jobs prepared side by side do not oversubscribe them
        threads = getattr(self.pipeline.engine, "compute_threads", None)
        try:
            with threads() if callable(threads) else contextlib.nullcontext():
                fn(*args)
        except BaseException as exc:
            self._end(job, self._outcome(job, exc))

    def _prepare(self, job: Job) -> None:
        self.post(Event("started", job))
        t0 = time.monotonic()
        job.cancel.check()
        audio = self._decode(job)
        t1 = time.monotonic()
        job.cancel.check()
        if job.kind == "transcribe":
            job.stage = "transcribing"
            heard = self.pipeline.transcribe(audio, self.sr, self._progress_fn(job), job.cancel)
            job.cancel.check()
            self._end(job, Event("transcript", job, transcript=heard.to_dict(),
                                 timing={"decode_s": t1 - t0, "asr_s": time.monotonic() - t1, "queued_s": t0 - job.submitted}))
            return
        job.stage = "generating"
        if self.batcher is None:  # a batch of one: the whole generation here
            motion = self.pipeline.generate(audio, self.sr, job.options, progress=self._progress_fn(job),
                                            cancel=job.cancel)
            self._deliver(job, motion, t0, t1)
            return
        task = self.pipeline.begin(audio, self.sr, job.options, progress=self._progress_fn(job), cancel=job.cancel)
        self._ready.append(_Sampling(job, task, t0, t1))
        self._wake.set()

    def _complete(self, s: _Sampling) -> None:
        self._deliver(s.job, s.task.finish(), s.t0, s.t1)

    def _deliver(self, job: Job, motion: Any, t0: float, t1: float) -> None:
        t2 = time.monotonic()
        if job.cancel.cancelled:  # engines that never check the token still end up cancelled
            raise Cancelled("cancelled")
        if not isinstance(motion, FaceMotion):
            raise TypeError(f"engine returned {type(motion).__name__}, not a FaceMotion")
        timing = {"decode_s": t1 - t0, "engine_s": t2 - t1, "queued_s": t0 - job.submitted}
        self._end(job, Event("result", job, motion=motion, timing=timing))

    def _end(self, job: Job, ev: Event) -> None:
        """A job's one terminal event; its place goes to the next queued job."""
        with self._lock:
            if self._running.pop(job.id, None) is None:
                return  # already ended (a cancel seen twice)
        job.finished = time.monotonic()
        self.post(ev)
        self._wake.set()

    def _outcome(self, job: Job, exc: BaseException) -> Event:
        """The terminal event for a job that raised ``exc``."""
        if isinstance(exc, Cancelled):
            return Event("cancelled", job, message=job.cancel_reason)
        if isinstance(exc, AudioTooLong):
            more = "at least " if exc.at_least else ""
            return Event("error", job, code=ErrorCode.AUDIO_TOO_LONG, message=(
                f"audio is {more}{exc.seconds:.1f} s long; this server accepts up to {self.max_audio_seconds:g} s "
                "(split the clip, or restart the server with a larger --max-audio-seconds)"))
        if isinstance(exc, AudioError):
            return Event("error", job, code=ErrorCode.BAD_AUDIO, message=str(exc))
        if isinstance(exc, (ValueError, MotionError, KeyError, RecogniserError)):
            # engines raise ValueError for inputs they refuse (unknown style, bad option combination)
            return Event("error", job, code=ErrorCode.ENGINE_REJECTED, message=str(exc))
        if isinstance(exc, Exception):
            log.error("job %s: engine failed", job.id, exc_info=exc)
            return Event("error", job, code=ErrorCode.ENGINE_ERROR,
                         message=f"the engine failed: {type(exc).__name__}: {exc} (see the server log)")
        log.error("job %s: unexpected failure in the worker", job.id, exc_info=exc)
        return Event("error", job, code=ErrorCode.INTERNAL, message="internal server error")

    def _decode(self, job: Job) -> np.ndarray:
        job.stage = "decoding audio"
        src = job.audio_path if job.audio_path is not None else bytes(job.audio)
        job.audio = None  # free the container bytes early
        # header facts are checked before decoding, decoding stops at the limit, and a cancel (or the
        # server stopping) kills an ffmpeg child at once
        x = load_audio(src, sr=self.sr, max_seconds=self.max_audio_seconds, cancel=job.cancel.check,
                       timeout_s=self.decode_timeout_s)
        job.audio_seconds = x.size / self.sr
        return x

    def _progress_fn(self, job: Job) -> Callable[[float, str], None]:
        last = [0.0, ""]

        def progress(fraction: float, stage: str) -> None:
            job.cancel.check()  # lets cancel work even in engines that only report progress
            f = float(min(max(fraction, 0.0), 1.0))
            job.fraction, job.stage = f, str(stage)
            now = time.monotonic()
            if job.want_progress and (stage != last[1] or now - last[0] >= self.progress_interval_s or f >= 1.0):
                last[0], last[1] = now, job.stage
                self.post(Event("progress", job))

        return progress
