"""Run the Blender half of `talkrig animate` in ONE child process, the batch runner
(``python -m blender_addon.headless --job-file FILE``), so motion_server never imports bpy, and read its
progress back. Each job is the runner's own flags (the names `talkrig animate` takes) plus its take: the
motion generated here and the audio it was made from.

The child prints ordinary Blender chatter on stdout too; only lines starting with ``PROGRESS_PREFIX``
carry JSON events: {"type": "start"|"stage"|"frames"|"done"|"error", "job": index, ...}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig_mapping.atomic import scratch_dir

from .plan import DEMO_CHARACTER, JOBS_VERSION, PROGRESS_PREFIX

EventFn = Callable[[dict[str, Any]], None]


@dataclass
class BlenderJob:
    """Everything the child needs for one input; paths are absolute."""

    motion: str  # .npz written by the parent
    audio: str
    name: str  # take / Action name
    out: str | None = None  # .glb/.gltf/.fbx/.blend, or None (render only)
    render: str | None = None  # .mp4 or None
    character: str = DEMO_CHARACTER  # a .blend/.glb/.gltf/.fbx, or the bundled demo head
    target: str | None = None  # object name of the character (None: found by its shape keys)
    profile: str | None = None  # mapping profile: preset name or file (None: automatic)
    resolution: tuple[int, int] = (480, 480)
    samples: int | None = None  # None: the render engine's default
    render_engine: str = "workbench"
    overwrite: bool = False

    def spec(self) -> dict[str, Any]:
        """This job in the runner's job file: its command-line flags and its one take."""
        argv = ["--character", self.character]
        for flag, value in (("--target", self.target), ("--profile", self.profile), ("--out", self.out),
                            ("--render", self.render), ("--samples", self.samples)):
            if value is not None:
                argv += [flag, str(value)]
        argv += ["--resolution", "x".join(map(str, self.resolution)), "--render-engine", self.render_engine]
        if self.overwrite:
            argv.append("--overwrite")
        return {"argv": argv, "takes": [{"name": self.name, "motion": self.motion, "audio": self.audio}]}


@dataclass
class JobResult:
    ok: bool = False
    error: str | None = None
    outputs: list[str] = field(default_factory=list)
    render_frames: int = 0
    render_seconds: float = 0.0
    crashed: bool = False  # the child died before reporting this job: worth another try elsewhere


def run_blender_jobs(jobs: list[BlenderJob], on_event: EventFn | None = None,
                     workdir: str | Path | None = None) -> list[JobResult]:
    """Run all jobs in one child; a job that fails does not stop the others. If the child dies, every
    job without a result gets the child's last stderr lines as its error."""
    results = [JobResult() for _ in jobs]
    if not jobs:
        return results
    # a scratch folder a later run sweeps if this process is killed (a TemporaryDirectory would stay)
    scratch = scratch_dir("jobs") if workdir is None else tempfile.TemporaryDirectory(prefix="talkrig_jobs_", dir=workdir)
    with scratch as tmp:
        spec = Path(tmp) / "jobs.json"
        spec.write_text(json.dumps({"version": JOBS_VERSION, "jobs": [j.spec() for j in jobs]}, indent=1))
        errlog = Path(tmp) / "stderr.txt"
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(errlog, "w+") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "blender_addon.headless", "--job-file", str(spec)],
                stdout=subprocess.PIPE, stderr=err, text=True, env=env, bufsize=1,
            )
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if not line.startswith(PROGRESS_PREFIX):
                        continue
                    try:
                        ev = json.loads(line[len(PROGRESS_PREFIX):])
                    except json.JSONDecodeError:
                        continue
                    _record(ev, results)
                    if on_event is not None:
                        on_event(ev)
                rc = proc.wait()
            except BaseException:  # Ctrl+C: do not leave Blender rendering on its own
                proc.kill()
                proc.wait()
                raise
            err.seek(0)
            tail = [ln for ln in err.read().splitlines() if ln.strip() and "EGL" not in ln][-5:]
    for r in results:
        if not r.ok and r.error is None:
            why = " | ".join(tail) or f"exit status {rc}"
            r.error = f"the Blender job stopped before finishing this input: {why}"
            r.crashed = True
    return results


def _record(ev: dict[str, Any], results: list[JobResult]) -> None:
    i = ev.get("job")
    if not isinstance(i, int) or not 0 <= i < len(results):
        return
    r = results[i]
    if ev.get("type") == "done":
        r.ok = True
        r.outputs = list(ev.get("outputs", []))
        r.render_frames = int(ev.get("render_frames", 0))
        r.render_seconds = float(ev.get("render_seconds", 0.0))
    elif ev.get("type") == "error":
        r.error = str(ev.get("error"))
