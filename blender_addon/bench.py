"""Blender-side speed measurements: keyframe writing (apply_motion), read-back, glTF/FBX export.

Run by ``talkrig bench --what blender`` in a child process (motion_server never imports bpy):
``python -m blender_addon.bench --durations 10,60 --repeats 3 --warmup 1`` prints one ``BENCH_JSON [...]``
line. Every step runs ``warmup`` untimed times (the first export also imports the exporter), then
``repeats`` timed times; rows give the median and range. ``peak_rss_mib`` is this process's high-water
mark so far (bpy, the demo head and every take written up to that row).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from rig_mapping import FaceMotion

from .core import apply, export, readback
from .core.demo_head import build_demo_head
from .core.target import find_target


def _motion(seconds: float, fps: float, seed: int = 0) -> Any:
    """Smooth random curves on every channel plus head motion: the writer's worst case (no flat curves)."""
    n = max(1, int(round(seconds * fps)))
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None] / fps
    w = 0.5 + 0.45 * np.sin(2 * np.pi * (0.3 + 2 * rng.random(52)) * t + 6 * rng.random(52))
    h = np.zeros((n, 6))
    h[:, :3] = 0.1 * np.sin(2 * np.pi * 0.5 * t + rng.random(3))
    return FaceMotion.from_arrays(w.astype(np.float32), h.astype(np.float32), fps=fps,
                                                meta={"audio_name": f"bench_{seconds:g}s.wav"})


def _peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def _row(step: str, seconds: float, times: list[float], warmup: int, **extra: Any) -> dict[str, Any]:
    med = statistics.median(times)
    return {"what": "blender", "name": step, "duration_s": seconds, "median_s": round(med, 4),
            "min_s": round(min(times), 4), "max_s": round(max(times), 4), "times_s": [round(t, 4) for t in times],
            "repeats": len(times), "warmup": warmup, "rtf_median": seconds / med, "rtf_min": seconds / max(times),
            "rtf_max": seconds / min(times), "peak_rss_mib": _peak_rss_mib(), **extra}


def _timed(fn: Any, repeats: int, warmup: int) -> list[float]:
    """``warmup`` untimed calls, then the wall time of ``repeats`` calls (at least one)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def bench_blender(durations: list[float], repeats: int = 3, fps: float = 30.0, export_max_s: float = 60.0,
                  progress: Any = None, warmup: int = 1) -> list[dict[str, Any]]:
    """Time keyframe writing (52 shape channels + head/neck bones) for each audio duration, and read-back
    and exports for durations up to ``export_max_s`` (exports sample the whole 26k-vertex head)."""
    say = progress or (lambda m: None)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = int(fps), 1.0
    head = build_demo_head()
    target = find_target(head.mesh)
    n_keys = len(target.shape_names)
    rows = []
    with tempfile.TemporaryDirectory(prefix="talkrig-bench-") as tmp:
        for seconds in durations:
            motion = _motion(seconds, fps)
            say(f"blender: keying {seconds:g} s ({motion.n_frames} frames x {n_keys} shape keys + bones)")
            takes: list[Any] = []

            def key_take(motion: Any = motion, takes: list[Any] = takes) -> None:
                # Keep only the newest take so every run writes into the same scene state.
                for act in takes:
                    bpy.data.actions.remove(act)
                takes[:] = list(set(apply.apply_motion(motion, target).values()))

            times = _timed(key_take, repeats, warmup)
            rows.append(_row("apply_motion", seconds, times, warmup, frames=motion.n_frames, channels=n_keys))
            if seconds > export_max_s:
                continue
            times = _timed(lambda n=motion.n_frames: readback.motion_from_character(target, frame_start=1, frame_end=n),
                           repeats, warmup)
            rows.append(_row("read_back", seconds, times, warmup, frames=motion.n_frames))
            for step, fn, suffix in (("export_gltf", export.export_gltf, ".glb"), ("export_fbx", export.export_fbx, ".fbx")):
                say(f"blender: {step} {seconds:g} s")
                path = Path(tmp) / f"bench_{seconds:g}{suffix}"
                times = _timed(lambda fn=fn, path=path: fn(path, target.objects, overwrite=True), repeats, warmup)
                rows.append(_row(step, seconds, times, warmup, frames=motion.n_frames,
                                 file_mb=round(path.stat().st_size / 1e6, 2)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="TalkRig Blender-side benchmark (keyframe writing, export)")
    ap.add_argument("--durations", default="10,60", help="comma list of seconds of animation")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs of every step before the timed ones")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--export-max-s", type=float, default=60.0, help="skip exports for longer takes")
    args = ap.parse_args(argv)
    durations = [float(x) for x in args.durations.split(",") if x.strip()]
    rows = bench_blender(durations, args.repeats, args.fps, args.export_max_s,
                         progress=lambda m: print(m, file=sys.stderr, flush=True), warmup=args.warmup)
    print("BENCH_JSON " + json.dumps(rows), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
