"""The Blender half of `talkrig animate`, run as its own process:

    python -m blender_addon.animate_job --jobs JOBS.json

For each job: a fresh scene with the character (the bundled demo head, or a .blend/.glb/.gltf/.fbx),
the motion keyed into a new Action with the sound strip, then the export and/or a preview render.
Progress goes to stdout as lines ``@talkrig {json}`` (Blender's own chatter is ignored by the parent);
one failing job reports an error event and the next job still runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import bpy

from rig_mapping import formats

from .core.apply import apply_motion
from .core.demo_head import CREDIT, build_demo_head
from .core.export import ExportError, export_fbx, export_gltf, save_blend_atomic
from .core.render import RenderError, fps_pair, render_preview
from .core.target import Target, TargetError, find_target

PROGRESS_PREFIX = "@talkrig "
# Errors whose message is already written for the user; anything else also shows its type.
_USER_ERRORS = (TargetError, ExportError, RenderError, FileNotFoundError, FileExistsError, ValueError)


class JobError(RuntimeError):
    """A job that cannot go on; the message names the file and the fix."""


def emit(event: dict[str, Any]) -> None:
    sys.stdout.write(PROGRESS_PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


def find_character(scene: bpy.types.Scene, source: str) -> Target:
    """The first object in the scene that belongs to an animatable character."""
    candidates = [o for o in scene.objects if o.type == "MESH" and o.data.shape_keys is not None]
    candidates += [o for o in scene.objects if o.type == "ARMATURE"]
    for ob in candidates:
        try:
            return find_target(ob)
        except TargetError:
            continue
    raise JobError(
        f"{source}: no mesh with ARKit-like shape keys (jawOpen, eyeBlink_L, JawOpen...) and no armature "
        "with head/jaw bones; give a character with facial shape keys or leave out --character to use the "
        "demo head"
    )


def load_character(path: str | None) -> tuple[bpy.types.Scene, Target, bool]:
    """(scene, target, scene_is_users): a fresh scene holding the character."""
    if path is None:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        head = build_demo_head(scene)
        return scene, find_target(head.mesh), False
    p = Path(path)
    if not p.is_file():
        raise JobError(f"character file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(p), load_ui=False)
        scene = bpy.context.scene
        return scene, find_character(scene, p.name), True
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        if suffix in (".glb", ".gltf"):
            bpy.ops.import_scene.gltf(filepath=str(p))
        elif suffix == ".fbx":
            bpy.ops.import_scene.fbx(filepath=str(p))
        else:
            raise JobError(f"cannot load a character from {p.name}: use .blend, .glb, .gltf or .fbx")
    except RuntimeError as exc:
        raise JobError(f"could not import {p.name}: {exc}") from exc
    scene = bpy.context.scene
    return scene, find_character(scene, p.name), False


def _save_blend(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise JobError(f"{out} already exists; pass --overwrite to replace it")
    save_blend_atomic(out, overwrite)


def run_job(index: int, job: dict[str, Any]) -> dict[str, Any]:
    def stage(name: str) -> None:
        emit({"type": "stage", "job": index, "stage": name})

    stage("character")
    scene, target, users_scene = load_character(job.get("character"))
    motion = formats.load_motion(job["motion"])
    if not users_scene:  # a new scene plays at the motion's rate; a user's .blend keeps its own
        scene.render.fps, scene.render.fps_base = fps_pair(motion.fps)
    start = scene.frame_start if users_scene else 1

    stage("keys")
    apply_motion(motion, target, action_name=job["name"], start_frame=start, scene=scene,
                 audio_path=job.get("audio"))
    outputs: list[str] = []
    overwrite = bool(job.get("overwrite"))
    out = job.get("out")
    if out:
        stage("export")
        p = Path(out)
        suffix = p.suffix.lower()
        if suffix in (".glb", ".gltf"):
            # frame `start` is audio time 0, so the clip starts at t=0 like the sound in a game engine
            extra = {} if job.get("character") else {"export_copyright": CREDIT}
            export_gltf(p, overwrite=overwrite, clip_name=job["name"], export_anim_slide_to_zero=True, **extra)
        elif suffix == ".fbx":
            export_fbx(p, overwrite=overwrite)
        elif suffix == ".blend":
            _save_blend(p, overwrite)
        else:
            raise JobError(f"the Blender job cannot write {p.name}: use .glb, .gltf, .fbx or .blend")
        outputs.append(str(p))

    result: dict[str, Any] = {"type": "done", "job": index, "outputs": outputs}
    if job.get("render"):
        stage("render")
        fps = scene.render.fps / scene.render.fps_base
        stats = render_preview(
            job["render"], job.get("audio"), scene.frame_start, scene.frame_end, fps,
            resolution=tuple(job.get("resolution", (480, 480))), samples=job.get("samples"),
            engine=job.get("render_engine", "workbench"), overwrite=overwrite, objects=target.meshes,
            scene=scene,
            progress=lambda done, total: emit({"type": "frames", "job": index, "done": done, "total": total}),
        )
        outputs.append(str(stats.path))
        result.update(render_frames=stats.frames, render_seconds=round(stats.seconds, 3))
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m blender_addon.animate_job", description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", required=True, help="JSON file: {'jobs': [{motion, audio, name, out, render, ...}]}")
    args = ap.parse_args(argv)
    spec = json.loads(Path(args.jobs).read_text())
    failed = 0
    for i, job in enumerate(spec.get("jobs", [])):
        emit({"type": "start", "job": i, "name": job.get("name")})
        t0 = time.perf_counter()
        try:
            result = run_job(i, job)
        except Exception as exc:  # one bad job must not stop the batch
            failed += 1
            msg = str(exc) if isinstance(exc, (JobError, *_USER_ERRORS)) else f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
            emit({"type": "error", "job": i, "error": msg})
            continue
        result["seconds"] = round(time.perf_counter() - t0, 3)
        emit(result)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
