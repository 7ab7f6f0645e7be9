"""Where `talkrig animate` runs its work: this process (``--jobs 1``), a pool of local worker processes
(``--jobs N``) or Ray tasks on a cluster (``--ray``).

There is one function per kind of work - :func:`motion_task` (audio -> FaceMotion) and
:func:`blender_task` (motions -> keyed, exported, rendered files) - and the backends only decide where it
runs. Each worker process builds its engine on its first task and keeps it, so a model loads once per
worker, not once per file. Every backend hands back ``concurrent.futures.Future`` objects, so the
scheduler in :mod:`motion_server.animate.run` is the same for all of them.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from motion_server.engine.base import Cancelled, CancelToken, GenerateOptions, ProgressFn
from rig_mapping import FaceMotion
from rig_mapping.atomic import scratch_dir

from .blender_bridge import BlenderJob, JobResult, run_blender_jobs
from .fork_server import start_worker_imports, worker_context

# Share of a GPU one motion task asks Ray for: the model is small, several workers fit on one card.
RAY_GPU_SHARE = 0.25


@dataclass(frozen=True)
class EngineSpec:
    """How a worker builds its generator (hashable: a worker keeps one generator per spec)."""

    engine: str
    model: str | None = None
    server: str | None = None
    asr_model: str | None = None


@dataclass
class MotionTask:
    index: int
    audio: str
    options: GenerateOptions
    sidecar: bool = True  # read <stem>.txt beside the audio as its transcript


@dataclass
class MotionDone:
    index: int
    motion: FaceMotion | None = None
    duration: float = 0.0
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    retry: bool = False  # the worker failed, not the input: worth another try
    worker: str = ""
    seconds: float = 0.0


@dataclass
class BlenderTask:
    """Blender jobs for one child process, each with its motion (written to the worker's own scratch
    folder, so the task also runs on a node that cannot see this machine's temporary files)."""

    jobs: list[tuple[int, BlenderJob, FaceMotion]]


@dataclass
class BlenderDone:
    results: list[tuple[int, JobResult]]
    worker: str = ""
    seconds: float = 0.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


_GENERATORS: dict[EngineSpec, Any] = {}


def _generator(spec: EngineSpec) -> Any:
    if spec not in _GENERATORS:
        from .generate import make_generator

        _GENERATORS[spec] = make_generator(spec.engine, spec.model, spec.server, spec.asr_model)
    return _GENERATORS[spec]


def close_generators() -> None:
    while _GENERATORS:
        _GENERATORS.popitem()[1].close()


def reason(exc: BaseException) -> str:
    msg = str(exc).strip()
    if isinstance(exc, (ValueError, OSError, RuntimeError)) and msg:
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def motion_task(spec: EngineSpec, task: MotionTask, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> MotionDone:
    """One audio file -> its FaceMotion, in whatever process runs it. A bad input is reported, not
    retried; anything else (a broken engine, memory) is marked worth another try."""
    from .generate import animate_file

    t0 = time.perf_counter()
    done = MotionDone(index=task.index, worker=worker_name())
    try:
        gen = _generator(spec)
        done.motion, done.duration, done.notes = animate_file(gen, Path(task.audio), task.options, progress,
                                                              cancel, sidecar=task.sidecar)
    except Cancelled:
        raise
    except (ValueError, OSError) as exc:  # the input: unreadable, too long, a bad transcript file...
        done.error = reason(exc)
    except Exception as exc:  # noqa: BLE001 - reported per input; the batch goes on
        done.error, done.retry = reason(exc), True
    done.seconds = time.perf_counter() - t0
    return done


def ray_motion_task(spec: EngineSpec, task: MotionTask) -> MotionDone:
    """``motion_task`` on a Ray worker: one CPU each (what the task asks Ray for), set before torch or
    CTranslate2 load in the worker process."""
    if not _GENERATORS:
        _init_worker(1)
    return motion_task(spec, task)


def blender_task(task: BlenderTask) -> BlenderDone:
    """Key, export and render a group of inputs in one Blender child process."""
    from rig_mapping.formats import save_motion

    t0 = time.perf_counter()
    with scratch_dir("blender_task") as tmp:
        jobs = []
        for n, (index, job, motion) in enumerate(task.jobs):
            path = Path(tmp) / f"{n:04d}_{index}.npz"
            save_motion(motion, path, overwrite=True)
            jobs.append(replace(job, motion=str(path)))
        results = run_blender_jobs(jobs)
    return BlenderDone([(index, r) for (index, _, _), r in zip(task.jobs, results, strict=True)],
                       worker_name(), time.perf_counter() - t0)


class Backend(Protocol):
    label: str
    workers: int

    def submit_motion(self, spec: EngineSpec, task: MotionTask) -> Future[MotionDone]: ...

    def submit_blender(self, task: BlenderTask) -> Future[BlenderDone]: ...

    def restart(self) -> None: ...

    def close(self, cancel: bool = False) -> None: ...


def _init_worker(threads: int, env: dict[str, str] | None = None) -> None:
    if env is not None:  # a local pool's worker
        # the command's environment now (a fork server's copy is from when it started), and Ctrl-C
        # handled as a spawned worker handles it (the fork server ignores it)
        os.environ.clear()
        os.environ.update(env)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # before the engine or CTranslate2 load in this process: N workers share the cores instead of each
    # spinning up threads for all of them
    os.environ["TALKRIG_THREADS"] = str(threads)
    os.environ["TALKRIG_BATCH_THREADS"] = str(threads)
    os.environ["TALKRIG_ASR_THREADS"] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules:  # forked from the fork server, which imported torch before this ran
        sys.modules["torch"].set_num_threads(threads)


class LocalBackend:
    """``--jobs 1``: one worker thread in this process (per-file progress, no start-up cost).
    ``--jobs N``: N worker processes, each with its own engine; Blender work runs N children at a time."""

    def __init__(self, jobs: int = 1, progress: ProgressFn | None = None) -> None:
        if jobs < 1:
            raise ValueError(f"--jobs {jobs}: give 1 or more workers")
        self.workers = jobs
        self.label = "this process" if jobs == 1 else f"{jobs} local worker processes"
        self.progress = progress  # per-file progress of the in-process worker (--jobs 1)
        self._cancel = CancelToken()
        self._pool: ThreadPoolExecutor | ProcessPoolExecutor | None = None
        self._blender = ThreadPoolExecutor(jobs, thread_name_prefix="talkrig-blender")
        self.restart()

    def restart(self) -> None:
        """A fresh pool after a worker died (a dead process breaks a ProcessPoolExecutor for good). Every
        task the broken pool held fails and asks for this: only the first call replaces it."""
        if self._pool is not None:
            if not getattr(self._pool, "_broken", False):
                return
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.workers == 1:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="talkrig-motion")
        else:
            start_worker_imports()  # no-op when the command has started it already
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=worker_context(),
                                             initializer=_init_worker, initargs=(threads, dict(os.environ)))

    def submit_motion(self, spec: EngineSpec, task: MotionTask) -> Future[MotionDone]:
        assert self._pool is not None
        if self.workers == 1:
            return self._pool.submit(motion_task, spec, task, self.progress, self._cancel)
        try:
            return self._pool.submit(motion_task, spec, task)
        except BrokenProcessPool:  # a worker died since the last result was read
            self.restart()
            return self._pool.submit(motion_task, spec, task)

    def submit_blender(self, task: BlenderTask) -> Future[BlenderDone]:
        return self._blender.submit(blender_task, task)

    def worker_pids(self) -> list[int]:
        """The live worker processes (tests kill one to show a batch survives it)."""
        procs = getattr(self._pool, "_processes", None) or {}
        return [p.pid for p in procs.values() if p.is_alive()]

    def close(self, cancel: bool = False) -> None:
        if cancel:
            self._cancel.cancel()
            if isinstance(self._pool, ProcessPoolExecutor):
                # Ctrl-C: stop the workers now; what they were writing never reaches its final path
                for p in list((getattr(self._pool, "_processes", None) or {}).values()):
                    p.terminate()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._blender.shutdown(wait=True, cancel_futures=True)
        if self.workers == 1:
            close_generators()


# no runtime_env: a job with one gets freshly started worker processes instead of the ones Ray starts with
# the cluster (measured: ~0.9 s more before the first line); the tasks pin their threads themselves
# (ray_motion_task)
_RAY_INIT: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}


class RayBackend:
    """Ray tasks: motion on workers with a GPU share where the cluster has GPUs, Blender on CPU workers.
    ``address``: 'auto' joins the cluster this machine belongs to (or starts a local one), else a
    ``ray://`` or ``host:port`` address. Inputs and outputs must be on storage every node can read and
    write (the tasks read audio and write files by their paths). ``close`` disconnects from Ray when this
    backend connected (a caller that initialised Ray itself keeps its connection)."""

    def __init__(self, address: str = "auto", num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError("--ray needs Ray: pip install 'talkrig[ray]' (scripts/setup.sh --test "
                               "installs it), or leave out --ray to use local workers (--jobs N)") from None
        self._ray = ray
        self.notes: list[str] = []
        # this backend connected, so it disconnects at close: measured ~0.6 s sooner out of the command
        # than leaving it to Ray's exit handler
        self._connected = not ray.is_initialized()
        if self._connected:
            if address == "auto":
                try:
                    ray.init(address="auto", **_RAY_INIT)
                except ConnectionError:
                    ray.init(num_cpus=num_cpus, **_RAY_INIT)
                    self.notes.append("no Ray cluster is running here; started a local one")
            else:
                ray.init(address=address, **_RAY_INIT)
        try:
            res = ray.cluster_resources()
        except Exception:
            if self._connected:  # no half-made backend keeps the connection (or a cluster it started)
                ray.shutdown()
            raise
        self.workers = max(1, int(res.get("CPU", 1)))
        gpus = float(res.get("GPU", 0))
        self.label = f"Ray ({len(ray.nodes())} node(s), {self.workers} CPU, {gpus:g} GPU)"
        motion_opts: dict[str, Any] = {"max_retries": 0}  # retries are ours: counted and reported per input
        motion_opts.update(num_gpus=RAY_GPU_SHARE, num_cpus=1) if gpus else motion_opts.update(num_cpus=1)
        self._motion = ray.remote(**motion_opts)(ray_motion_task)
        self._blender = ray.remote(max_retries=0, num_cpus=1)(blender_task)
        self._refs: list[Any] = []

    def submit_motion(self, spec: EngineSpec, task: MotionTask) -> Future[MotionDone]:
        ref = self._motion.remote(spec, task)
        self._refs.append(ref)
        return ref.future()

    def submit_blender(self, task: BlenderTask) -> Future[BlenderDone]:
        ref = self._blender.remote(task)
        self._refs.append(ref)
        return ref.future()

    def restart(self) -> None:
        """Nothing to rebuild: Ray replaces a dead worker process by itself."""

    def close(self, cancel: bool = False) -> None:
        if cancel:
            for ref in self._refs:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - finished or already gone
                    pass
        self._refs.clear()
        if self._connected:  # a cluster it joined keeps running; one that ray.init started here stops
            self._ray.shutdown()


def make_backend(jobs: int = 1, ray: str | None = None) -> Backend:
    return RayBackend(ray) if ray else LocalBackend(jobs)
