"""Headless preview render: a camera framed on the face, simple lighting, frames to PNG, then ffmpeg muxes
them with the audio into an H.264/AAC mp4 whose length is exactly the frame range.

Works in ``blender -b`` and with the bpy wheel: no timers, no modal operators, no viewport.

The mp4 is written atomically (``rig_mapping.atomic``): ffmpeg writes a hidden temporary .mp4 beside the
destination, renamed over it only when complete, so a kill never leaves a truncated or empty video in
place of the previous one. Frames go to a scratch folder that a later run sweeps if this one is killed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector

from rig_mapping import atomic

ENGINES = {"workbench": "BLENDER_WORKBENCH", "cycles": "CYCLES", "eevee": "BLENDER_EEVEE"}
CAMERA_NAME = "TalkRig_PreviewCamera"
LIGHT_NAME = "TalkRig_PreviewLight"
_BACKGROUND = (0.16, 0.17, 0.19, 1.0)

# progress(frames_done, frames_total)
FrameProgress = Callable[[int, int], None]


class RenderError(RuntimeError):
    """The preview could not be made; the message says why and what to do."""


@dataclass
class RenderStats:
    path: Path
    frames: int
    seconds: float  # time spent rendering frames (not muxing)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def _engine_id(engine: str) -> str:
    if engine in ENGINES.values():
        return engine
    try:
        ident = ENGINES[engine.lower()]
    except KeyError:
        raise RenderError(f"unknown render engine {engine!r}; choose one of {', '.join(ENGINES)}") from None
    if ident == "BLENDER_EEVEE":  # Blender 4.2-4.4 call it BLENDER_EEVEE_NEXT
        known = {e.identifier for e in bpy.types.RenderSettings.bl_rna.properties["engine"].enum_items}
        if ident not in known and "BLENDER_EEVEE_NEXT" in known:
            ident = "BLENDER_EEVEE_NEXT"
    return ident


def face_bounds(objects: list[bpy.types.Object] | None = None) -> tuple[Vector, Vector]:
    """World-space (min, max) corners of the face: the vertices that any shape key moves (so a full-body
    character is framed on its face); the whole mesh when no shape key moves anything."""
    if objects is None:
        objects = [o for o in bpy.context.scene.objects if o.type == "MESH"]
    meshes = [o for o in objects if o.type == "MESH" and len(o.data.vertices)]
    if not meshes:
        raise RenderError("nothing to frame: the scene has no mesh (give a character with a face mesh)")
    worlds: list[np.ndarray] = []
    moves: list[np.ndarray] = []
    for ob in meshes:
        n = len(ob.data.vertices)
        base = np.empty(n * 3, np.float32)
        ob.data.vertices.foreach_get("co", base)
        base = base.reshape(n, 3)
        mw = np.array(ob.matrix_world, dtype=np.float64)
        world = base @ mw[:3, :3].T + mw[:3, 3]
        worlds.append(world)
        move = np.zeros(n, np.float32)  # largest displacement any shape key gives each vertex
        key = ob.data.shape_keys
        co = np.empty(n * 3, np.float32)
        for kb in key.key_blocks if key is not None else ():
            if kb == key.reference_key:
                continue
            kb.data.foreach_get("co", co)
            np.maximum(move, np.abs(co.reshape(n, 3) - base).max(axis=1), out=move)
        moves.append(move)
    world, move = np.concatenate(worlds), np.concatenate(moves)
    # keys also nudge the neck and scalp a little; the face is where they move things visibly
    if move.max() > 0:
        world = world[move > 0.1 * move.max()]
    return Vector(world.min(axis=0)), Vector(world.max(axis=0))


def frame_camera(
    scene: bpy.types.Scene,
    objects: list[bpy.types.Object] | None = None,
    turn_degrees: float = 0.0,
    lens_mm: float = 85.0,
    margin: float = 1.6,
) -> bpy.types.Object:
    """Put a portrait camera in front of the face (the character looks along -Y, Blender's front view),
    turned ``turn_degrees`` about the face's vertical axis for a 3/4 view. ``margin`` > 1 leaves room
    around the moving part of the face (forehead, ears, chin)."""
    lo, hi = face_bounds(objects)
    size = max(hi.x - lo.x, hi.z - lo.z) * margin
    centre = (lo + hi) / 2 + Vector((0.0, 0.0, 0.06 * size))  # a little headroom: the crown stays in frame
    cam_data = bpy.data.cameras.get(CAMERA_NAME) or bpy.data.cameras.new(CAMERA_NAME)
    cam_data.lens = lens_mm
    cam_data.sensor_fit = "AUTO"
    cam = bpy.data.objects.get(CAMERA_NAME) or bpy.data.objects.new(CAMERA_NAME, cam_data)
    if cam.name not in scene.collection.objects:
        scene.collection.objects.link(cam)
    aspect = scene.render.resolution_x / max(1, scene.render.resolution_y)
    fov = 2 * math.atan(cam_data.sensor_width / 2 / lens_mm)  # along the longer image side
    short_fov = fov if aspect == 1 else 2 * math.atan(math.tan(fov / 2) / max(aspect, 1 / aspect))
    dist = size / 2 / math.tan(short_fov / 2) + (hi.y - lo.y) / 2
    turn = math.radians(turn_degrees)
    cam.location = centre + Vector((dist * math.sin(turn), -dist * math.cos(turn), 0.0))
    cam.rotation_euler = (math.pi / 2, 0.0, turn)
    cam["talkrig_distance"] = dist
    cam_data.clip_start = max(0.001, dist / 100)
    cam_data.clip_end = dist * 100
    scene.camera = cam
    return cam


def setup_lighting(scene: bpy.types.Scene, engine_id: str, camera: bpy.types.Object) -> None:
    """Workbench: studio lighting with material colours. Cycles/EEVEE: one soft key light above and to
    the side of the camera plus a grey world, so the face reads without any scene setup."""
    if scene.world is None:
        scene.world = bpy.data.worlds.new("TalkRig_World")
    scene.world.color = _BACKGROUND[:3]  # Workbench's background
    if engine_id == "BLENDER_WORKBENCH":
        shading = scene.display.shading
        shading.light = "STUDIO"
        shading.color_type = "MATERIAL"
        shading.show_cavity = False
        return
    light_data = bpy.data.lights.get(LIGHT_NAME) or bpy.data.lights.new(LIGHT_NAME, "AREA")
    dist = camera.get("talkrig_distance", 1.0)
    light_data.energy = 15.0 * max(dist, 0.3) ** 2
    light_data.size = max(0.3, dist * 0.6)
    light = bpy.data.objects.get(LIGHT_NAME) or bpy.data.objects.new(LIGHT_NAME, light_data)
    if light.name not in scene.collection.objects:
        scene.collection.objects.link(light)
    rot = camera.rotation_euler.to_quaternion()  # matrix_world is stale until the next depsgraph update
    aim = camera.location + rot @ Vector((0.0, 0.0, -dist))  # about the face centre
    light.location = camera.location + rot @ Vector((dist * 0.5, dist * 0.4, 0.0))
    light.rotation_euler = (aim - light.location).to_track_quat("-Z", "Y").to_euler()
    if scene.world.node_tree is None:  # Blender < 5 creates worlds without nodes
        scene.world.use_nodes = True
    bg = next((n for n in scene.world.node_tree.nodes if n.type == "BACKGROUND"), None)
    if bg is not None:
        bg.inputs["Color"].default_value = _BACKGROUND
        bg.inputs["Strength"].default_value = 0.5


def _mux(frames_dir: Path, first: int, n_frames: int, fps: float, audio_path: str | None, out: Path,
         shown: Path | None = None) -> None:
    """ffmpeg: frames + audio -> ``out``; errors name ``shown`` (the destination) when ``out`` is a
    temporary file."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RenderError("rendering a preview needs ffmpeg (sudo apt-get install ffmpeg)")
    duration = n_frames / fps
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-y", "-framerate", f"{fps:g}", "-start_number", str(first),
           "-i", str(frames_dir / "frame_%06d.png")]
    if audio_path:
        cmd += ["-i", str(audio_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k",
                # pad short audio with silence, then cut at exactly n_frames / fps
                "-af", "apad"]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p",
            "-t", f"{duration:.6f}", "-movflags", "+faststart", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        tail = p.stderr.strip().splitlines()[-3:]
        why = " | ".join(tail).replace(str(out), str(shown or out)) or "unknown error"
        raise RenderError(f"ffmpeg could not write {shown or out}: {why}")


def render_preview(
    out_mp4: str | Path,
    audio_path: str | Path | None,
    frame_start: int,
    frame_end: int,
    fps: float,
    resolution: tuple[int, int] = (480, 480),
    samples: int | None = None,
    engine: str = "BLENDER_WORKBENCH",
    overwrite: bool = False,
    objects: list[bpy.types.Object] | None = None,
    turn_degrees: float = 0.0,
    progress: FrameProgress | None = None,
    scene: bpy.types.Scene | None = None,
) -> RenderStats:
    """Render ``frame_start..frame_end`` (inclusive) of ``scene`` to an mp4 with ``audio_path`` as its
    sound track, trimmed/padded so video and audio both last exactly (frames / fps) seconds.

    ``samples``: Cycles samples (default 16) or Workbench anti-aliasing samples (default FXAA)."""
    out = Path(out_mp4).resolve()
    if out.suffix.lower() != ".mp4":
        raise RenderError(f"preview must be an .mp4 file, got {out.name}")
    if out.exists() and not overwrite:
        raise RenderError(f"{out} exists; pass --overwrite to replace it")
    w, h = (int(v) for v in resolution)
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise RenderError(f"resolution {w}x{h} is not usable for H.264: both sides must be even and >= 16")
    if frame_end < frame_start:
        raise RenderError(f"empty frame range {frame_start}..{frame_end}")
    if shutil.which("ffmpeg") is None:  # before minutes of rendering, not after
        raise RenderError("rendering a preview needs ffmpeg (sudo apt-get install ffmpeg)")
    scene = scene or bpy.context.scene
    engine_id = _engine_id(engine)

    render = scene.render
    render.engine = engine_id
    render.resolution_x, render.resolution_y, render.resolution_percentage = w, h, 100
    render.fps, render.fps_base = fps_pair(fps)
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGB"
    render.film_transparent = False
    render.use_file_extension = True
    if engine_id == "CYCLES":
        scene.cycles.samples = max(1, int(samples or 16))
        scene.cycles.use_denoising = False  # a preview; denoiser availability varies by build
        scene.cycles.device = "CPU"
    elif engine_id == "BLENDER_WORKBENCH":
        scene.display.render_aa = _workbench_aa(samples)

    cam = frame_camera(scene, objects, turn_degrees=turn_degrees)
    setup_lighting(scene, engine_id, cam)
    n = frame_end - frame_start + 1
    done = 0

    def _count(*_args) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(done, n), n)

    prev = (scene.frame_start, scene.frame_end, render.filepath)
    bpy.app.handlers.render_write.append(_count)
    try:
        with atomic.scratch_dir("frames") as tmp:
            scene.frame_start, scene.frame_end = frame_start, frame_end
            render.filepath = str(tmp / "frame_######")
            t0 = time.perf_counter()
            bpy.ops.render.render(animation=True, scene=scene.name)
            seconds = time.perf_counter() - t0
            written = sorted(tmp.glob("frame_*.png"))
            if len(written) != n:
                raise RenderError(f"renderer wrote {len(written)} of {n} frames to {tmp}")
            out.parent.mkdir(parents=True, exist_ok=True)
            try:
                with atomic.atomic_output(out, overwrite=overwrite) as part:
                    _mux(tmp, frame_start, n, fps, str(audio_path) if audio_path else None, part, shown=out)
            except atomic.OutputError as exc:
                raise RenderError(str(exc)) from exc
            except FileExistsError as exc:
                raise RenderError(f"{out} exists; pass --overwrite to replace it") from exc
    finally:
        bpy.app.handlers.render_write.remove(_count)
        scene.frame_start, scene.frame_end, render.filepath = prev
    return RenderStats(path=out, frames=n, seconds=seconds)


def _workbench_aa(samples: int | None) -> str:
    """Workbench anti-aliasing for a sample count; None: FXAA, twice as fast as 8 samples at 480x480."""
    if samples is None:
        return "FXAA"
    for limit, mode in ((1, "OFF"), (4, "FXAA"), (7, "5"), (10, "8"), (15, "11")):
        if samples <= limit:
            return mode
    return "16"


def fps_pair(fps: float) -> tuple[int, float]:
    """Blender stores fps as int / base; 29.97 -> (30, 1.001)."""
    whole = round(fps)
    if abs(whole - fps) < 1e-6:
        return int(whole), 1.0
    return int(math.ceil(fps)), math.ceil(fps) / fps
