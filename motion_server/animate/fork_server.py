"""Where ``--jobs N`` worker processes come from: forked from one fork server that has imported what a
worker needs (torch, the engine, the aligner) once, instead of each spawned worker importing it all
again. On the 2-core box that is ~2 s of CPU per worker, and the fork server's imports run while the
command parses its arguments and plans the batch. The workers share the imported pages
(``python scripts/measure_worker_memory.py``). Linux only: elsewhere workers are spawned, as macOS's
own default is (forking a process that has loaded system frameworks is not safe there). Standard
library only, so the command can start it before importing anything heavy."""

from __future__ import annotations

import multiprocessing
import os
import sys
from multiprocessing.context import BaseContext

# Imports only, no torch ops and no threads of our own (numpy's OpenBLAS pool is fork-safe), so forking
# after them is safe. The first entry makes a Ctrl-C during the imports quiet in the fork server itself
# (each worker puts the default handler back).
WORKER_PRELOAD = (
    "motion_server.animate.fork_server_quiet",
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


def uses_fork_server() -> bool:
    return sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()


def worker_context() -> BaseContext:
    """The fork server's context (with ``WORKER_PRELOAD``), or spawning where it is not used."""
    if not uses_fork_server():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(list(WORKER_PRELOAD))
    return ctx


def start_worker_imports() -> None:
    """Start the fork server now (idempotent), so its imports run beside this process's own work.

    Python 3.11's fork server imports its preloads on its own ``sys.path`` (the current folder first), not
    this process's: it is started with this process's path as ``PYTHONPATH`` and ``PYTHONSAFEPATH`` set,
    so the workers load the same torch and the same TalkRig as this process."""
    if not uses_fork_server():
        return
    from multiprocessing import forkserver

    worker_context()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "PYTHONSAFEPATH")}
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
