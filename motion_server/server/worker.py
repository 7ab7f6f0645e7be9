"""The engine worker: one thread that owns the pipeline (model + device, and the speech recogniser) and
runs jobs one at a time.

The socket loop never waits for it; the worker reports through a thread-safe event list and wakes the
loop with one byte on an inproc socket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

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
    ) -> None:
        super().__init__(name="talkrig-engine", daemon=True)
        self.pipeline = pipeline
        self.queue = queue
        self.post = post
        self.sr = sample_rate
        self.max_audio_seconds = max_audio_seconds
        self.progress_interval_s = progress_interval_s
        self.decode_timeout_s = decode_timeout_s
        self.current: Job | None = None
        self._stop_event = threading.Event()
        self._wake_sock = None  # set by the server's post() the first time this thread posts

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.is_set():
            job = self.queue.get(timeout=0.2)
            if job is None:
                continue
            self.current = job
            try:
                self._run(job)
            except BaseException:  # never let the worker die: the server must keep serving
                log.exception("job %s: unexpected failure in the worker", job.id)
                self._finish(job, Event("error", job, code=ErrorCode.INTERNAL, message="internal server error"))
            finally:
                self.current = None
        if self._wake_sock is not None:
            self._wake_sock.close(0)

    def _finish(self, job: Job, ev: Event) -> None:
        job.finished = time.monotonic()
        self.post(ev)

    def _run(self, job: Job) -> None:
        self.post(Event("started", job))
        t0 = time.monotonic()
        try:
            job.cancel.check()
            audio = self._decode(job)
            t1 = time.monotonic()
            job.cancel.check()
            if job.kind == "transcribe":
                job.stage = "transcribing"
                heard = self.pipeline.transcribe(audio, self.sr, self._progress_fn(job), job.cancel)
                job.cancel.check()
                self._finish(job, Event("transcript", job, transcript=heard.to_dict(),
                                        timing={"decode_s": t1 - t0, "asr_s": time.monotonic() - t1,
                                                "queued_s": t0 - job.submitted}))
                return
            job.stage = "generating"
            motion = self.pipeline.generate(audio, self.sr, job.options, progress=self._progress_fn(job),
                                            cancel=job.cancel)
            t2 = time.monotonic()
            if job.cancel.cancelled:  # engines that never check the token still end up cancelled
                raise Cancelled("cancelled")
            if not isinstance(motion, FaceMotion):
                raise TypeError(f"engine returned {type(motion).__name__}, not a FaceMotion")
        except Cancelled:
            self._finish(job, Event("cancelled", job, message=job.cancel_reason))
            return
        except AudioTooLong as e:
            more = "at least " if e.at_least else ""
            self._finish(job, Event("error", job, code=ErrorCode.AUDIO_TOO_LONG, message=(
                f"audio is {more}{e.seconds:.1f} s long; this server accepts up to {self.max_audio_seconds:g} s "
                "(split the clip, or restart the server with a larger --max-audio-seconds)")))
            return
        except AudioError as e:
            self._finish(job, Event("error", job, code=ErrorCode.BAD_AUDIO, message=str(e)))
            return
        except (ValueError, MotionError, KeyError, RecogniserError) as e:
            # engines raise ValueError for inputs they refuse (unknown style, bad option combination)
            self._finish(job, Event("error", job, code=ErrorCode.ENGINE_REJECTED, message=str(e)))
            return
        except Exception as e:
            log.exception("job %s: engine failed", job.id)
            self._finish(job, Event("error", job, code=ErrorCode.ENGINE_ERROR,
                                    message=f"the engine failed: {type(e).__name__}: {e} (see the server log)"))
            return
        timing = {"decode_s": t1 - t0, "engine_s": t2 - t1, "queued_s": t0 - job.submitted}
        self._finish(job, Event("result", job, motion=motion, timing=timing))

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
