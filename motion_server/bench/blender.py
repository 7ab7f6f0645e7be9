"""Blender-side speed: keyframe writing (52 channels + head bones per take), read-back, glTF/FBX export.

motion_server never imports bpy, so this runs ``python -m blender_addon.bench`` (the bpy wheel) in a
child process and collects its rows. ``ctx.extra["blender_export_max_s"]`` (default 60) caps the take
length that is also exported (an export samples the whole 26k-vertex demo head).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from .context import BenchContext

DESCRIPTION = "Blender: keyframe writing (apply_motion), read-back, glTF and FBX export times on the demo head"
REPO = Path(__file__).resolve().parents[2]


def run(ctx: BenchContext) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "blender_addon.bench", "--durations", ",".join(f"{d:g}" for d in ctx.durations),
           "--repeats", str(ctx.repeats), "--warmup", str(ctx.warmup), "--export-max-s", str(ctx.extra.get("blender_export_max_s", 60.0))]
    ctx.say("blender: " + " ".join(cmd[1:]))
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    for line in r.stderr.splitlines():
        if line.startswith("blender:"):
            ctx.say(line)
    rows = next((ln for ln in r.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if r.returncode != 0 or rows is None:
        hint = " (is the bpy wheel installed? pip install bpy==5.0.1)" if "No module named 'bpy'" in r.stderr else ""
        raise RuntimeError(f"blender benchmark failed{hint}:\n{r.stderr[-2000:]}")
    return json.loads(rows[len("BENCH_JSON "):])
