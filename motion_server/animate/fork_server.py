"""Where ``--jobs N`` worker processes come from: forked from one fork server that has imported what a
worker needs (torch, the engine, the aligner) once, instead of each spawned worker importing it all
again. On the 2-core box that is ~2 s of CPU per worker, and the fork server's imports run while the
command parses its arguments and plans the batch. The workers share the imported pages (~60-110 MiB
less per worker; ``python scripts/measure_worker_memory.py``). Standard library only, so the command
can start it before importing anything heavy."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext

# Imports only: nothing here starts threads or runs torch ops, so forking after them is safe.
WORKER_PRELOAD = (
    "torch",
    "motion_server.animate.workers",
    "motion_server.animate.generate",
    "motion_server.model.engine",
    "motion_server.align.forced",
    "motion_server.transcribe.recogniser",
    "soundfile",
    "soxr",
    "pocketsphinx",
)


def worker_context() -> BaseContext:
    """The fork server's context (with ``WORKER_PRELOAD``), or spawning where the platform has no fork
    server (Windows)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_PRELOAD))
    return ctx


def start_worker_imports() -> None:
    """Start the fork server now (idempotent), so its imports run beside this process's own work."""
    if worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()
