"""Headless batch runner: audio(s) or motion file(s) -> keyed character -> .blend / FBX / glTF / preview.

Two ways in, same steps:
- with the bpy wheel: ``python -m blender_addon.headless --scene char.blend --audio a.wav --fbx out.fbx``
- inside Blender, as the extension's CLI command:
  ``blender -b -c talkrig --scene char.blend --audio a.wav --fbx out.fbx``

Nothing here relies on timers or modal operators (they never run in background mode): the client's
blocking API is used, progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import bpy

from motion_server import client as motion_client
from motion_server import options as gen_options
from rig_mapping import atomic, formats

from . import server_link
from ._deps import asset
from .core import export, mapping
from .core.apply import apply_motion, scene_fps
from .core.render import fps_pair
from .core.target import Target, TargetError, find_target
from .core.transcript import sidecar_transcript, take_line, take_properties

_OWN_FLAGS = ("fps",)  # option-table flags this runner defines itself


class HeadlessError(RuntimeError):
    """A batch step failed; the message says which and how to fix it."""


def build_parser(prog: str = "talkrig") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="TalkRig headless: animate a character from speech audio.")
    src = ap.add_argument_group("input")
    src.add_argument("--audio", action="append", default=[], type=Path,
                     help="speech audio file (repeat for several takes, placed one after another)")
    src.add_argument("--motion", action="append", default=[], type=Path,
                     help="a motion file instead of generating (.npz, Live Link .csv, Audio2Face .json)")
    scn = ap.add_argument_group("scene")
    scn.add_argument("--scene", type=Path, help=".blend with the character (default: the file Blender opened)")
    scn.add_argument("--demo-head", action="store_true", help="build the bundled demo head in an empty scene")
    scn.add_argument("--target", help="object name of the character (default: first with ARKit-like shape keys)")
    scn.add_argument("--profile", help="mapping profile: preset name or .toml/.json file (default: automatic)")
    scn.add_argument("--start-frame", type=int, default=1)
    scn.add_argument("--gap", type=int, default=12, help="frames between consecutive takes")
    scn.add_argument("--fps", type=float, help="set the scene frame rate first (e.g. 30, 24, 29.97)")
    scn.add_argument("--nla", action="store_true", help="add takes as NLA strips (always so for several takes)")
    gen = ap.add_argument_group("generation (with --audio)")
    gen.add_argument("--server", default=server_link.DEFAULT_ADDRESS, help="motion server address")
    gen.add_argument("--server-key", default="", help="server public key (remote servers)")
    gen.add_argument("--start-server", action="store_true", help="start a local server if none answers")
    gen.add_argument("--python", default="", help="Python with TalkRig installed, for --start-server")
    gen.add_argument("--keep-server", action="store_true",
                     help="leave a server started by --start-server running when the job ends (default: stop it)")
    gen.add_argument("--engine", default="", help="engine for --start-server (diffusion, procedural, energy)")
    gen.add_argument("--timeout", type=float, default=120.0)
    # --style ... --no-transcribe: the same flags, limits and help as `talkrig generate` (the option table);
    # --fps is the scene's rate here (set above), so the table's --fps is left out
    gen_options.add_arguments(gen, exclude=_OWN_FLAGS)
    gen.add_argument("--transcript", help="what is said; default: <audio stem>.txt beside the audio, if any")
    out = ap.add_argument_group("output")
    out.add_argument("--save", type=Path, help="save the animated scene as .blend")
    out.add_argument("--fbx", type=Path)
    out.add_argument("--gltf", type=Path, help=".glb or .gltf")
    out.add_argument("--preview", type=Path, help="render an .mp4 preview with the audio")
    out.add_argument("--overwrite", action="store_true", help="replace existing output files")
    out.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    return ap


def _progress_printer(label: str):
    state = {"last": -1}

    def progress(fraction: float, stage: str) -> None:
        pct = int(fraction * 100)
        if pct != state["last"]:
            state["last"] = pct
            print(f"\r{label}: {pct:3d}% {stage:<24}", end="", file=sys.stderr, flush=True)
            if pct >= 100:
                print(file=sys.stderr)

    return progress


def _pick_target(name: str | None) -> Target:
    if name:
        ob = bpy.data.objects.get(name)
        if ob is None:
            raise HeadlessError(f"no object named {name!r} in the scene; objects: "
                                f"{', '.join(o.name for o in bpy.context.scene.objects) or '(none)'}")
        return find_target(ob)
    for ob in bpy.context.scene.objects:
        if ob.type == "MESH" and ob.data.shape_keys is not None:
            try:
                t = find_target(ob)
            except TargetError:
                continue
            if t.meshes:
                return t
    raise HeadlessError("no object with ARKit-like shape keys in the scene: pass --target NAME, or --demo-head")


def _check_outputs(args: argparse.Namespace) -> None:
    for p in (args.save, args.fbx, args.gltf, args.preview):
        if p is not None and p.exists() and not args.overwrite:
            raise HeadlessError(f"{p} already exists; pass --overwrite to replace it")
        if p is not None:
            try:  # sweep a killed run's temporary files; refuse an unwritable folder before any work
                atomic.prepare_output(p)
            except OSError as exc:
                raise HeadlessError(str(exc)) from None


def _generate(args: argparse.Namespace, audio: Path, fps: float) -> Any:
    mc = motion_client
    # unset (None) options are left out: the server applies the model's / the style's own values
    opts: dict[str, Any] = {k: v for k, v in gen_options.from_arguments(args, exclude=_OWN_FLAGS).items()
                            if v is not None and k != "style"}
    opts["fps"] = fps
    try:
        text = (args.transcript or "").strip() or sidecar_transcript(audio)
    except ValueError as exc:
        raise HeadlessError(f"{exc}; fix it or pass --transcript") from None
    if text:
        opts["transcript"] = text
    if args.style:
        if Path(args.style).suffix.lower() in (".csv", ".npz", ".json"):
            opts["style_reference"] = formats.load_motion(args.style)
        else:
            opts["style"] = args.style
    try:
        server_link.check(args.server, args.server_key)
    except server_link.ServerLinkError as e:
        if not args.start_server:
            raise HeadlessError(f"{e}\n(or pass --start-server [--python PY])") from None
        server_link.start_local(args.server, args.python, args.engine)
    client = server_link.client(args.server, args.timeout, args.server_key)
    try:
        motion = client.generate(str(audio), opts, progress=_progress_printer(audio.name))
    except (mc.ClientError, mc.ServerError) as e:
        raise HeadlessError(f"{audio}: generation failed: {e}") from None
    return motion.replace(meta={**motion.meta, "audio_name": audio.name})


def run_job(args: argparse.Namespace) -> dict[str, Any]:
    """The whole batch job; returns a summary dict (takes, frame ranges, outputs, timings)."""
    t0 = time.perf_counter()
    if not args.audio and not args.motion:
        raise HeadlessError("nothing to animate: give --audio FILE (generate) or --motion FILE")
    _check_outputs(args)
    if args.scene:
        if not args.scene.is_file():
            raise HeadlessError(f"scene file not found: {args.scene}")
        bpy.ops.wm.open_mainfile(filepath=str(args.scene.resolve()))
    if args.demo_head:
        from .core.demo_head import build_demo_head

        if not args.scene:
            bpy.ops.wm.read_factory_settings(use_empty=True)
        build_demo_head(asset_path=asset("ict_face_arkit.npz"))
    scene = bpy.context.scene
    if args.fps:
        scene.render.fps, scene.render.fps_base = fps_pair(args.fps)
    target = _pick_target(args.target)
    profile = mapping.load_profile(args.profile) if args.profile else None
    fps = scene_fps(scene)

    inputs: list[tuple[str, Path, Path | None]] = [("audio", a, a) for a in args.audio]
    inputs += [("motion", m, None) for m in args.motion]
    as_nla = args.nla or len(inputs) > 1
    start = int(args.start_frame)
    takes = []
    for kind, path, audio in inputs:
        if not path.is_file():
            raise HeadlessError(f"{kind} file not found: {path}")
        t = time.perf_counter()
        motion = _generate(args, path, fps) if kind == "audio" else formats.load_motion(path)
        t_gen = time.perf_counter() - t
        t = time.perf_counter()
        created = apply_motion(motion, target, profile=profile, action_name=path.stem, start_frame=start,
                               as_nla=as_nla, scene=scene, audio_path=audio, set_frame_range=False)
        n = motion.resample(fps).n_frames
        takes.append({"name": sorted({a.name for a in created.values()}), "source": str(path), "frame_start": start,
                      "frame_end": start + n - 1, "generate_s": round(t_gen, 3),
                      "transcript": take_properties(motion.meta.get("transcript")) or None,
                      "apply_s": round(time.perf_counter() - t, 3)})
        start += n + int(args.gap)
    scene.frame_start = takes[0]["frame_start"]
    scene.frame_end = takes[-1]["frame_end"]

    outputs: dict[str, str] = {}
    if args.fbx:
        outputs["fbx"] = str(export.export_fbx(args.fbx, target.objects, overwrite=args.overwrite))
    if args.gltf:
        # One take: the assigned take is the clip. Several takes live in NLA strips: one glTF animation each.
        extra = {} if len(takes) == 1 else {"export_animation_mode": "ACTIONS"}
        outputs["gltf"] = str(export.export_gltf(args.gltf, target.objects, overwrite=args.overwrite,
                                                 clip_name=takes[0]["name"][0] if len(takes) == 1 else None, **extra))
    if args.preview:
        from .core.render import render_preview

        audio = str(args.audio[0]) if len(args.audio) == 1 and not args.motion else None
        render_preview(args.preview, audio, scene.frame_start, scene.frame_end, fps, overwrite=args.overwrite,
                       objects=target.objects, scene=scene)
        outputs["preview"] = str(args.preview)
    if args.save:
        export.save_blend_atomic(args.save, overwrite=args.overwrite)
        outputs["blend"] = str(args.save)
    return {"target": target.name, "fps": fps, "takes": takes, "outputs": outputs,
            "seconds": round(time.perf_counter() - t0, 3)}


def main(argv: list[str] | None = None, prog: str = "talkrig") -> int:
    args = build_parser(prog).parse_args(argv)
    had_server = server_link.local_server_running()
    try:
        summary = run_job(args)
    except (RuntimeError, TargetError, ValueError, OSError) as e:  # HeadlessError, ExportError, RenderError
        print(f"talkrig: error: {e}", file=sys.stderr)
        return 1
    finally:
        # a server this job started (--start-server) runs detached: stop it unless asked to keep it
        if not had_server and not args.keep_server and server_link.local_server_running():
            server_link.stop_local()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for t in summary["takes"]:
            print(f"{', '.join(t['name'])}: frames {t['frame_start']}-{t['frame_end']} from {t['source']}")
            if t.get("transcript"):
                print(f"  {take_line(t['transcript'])}")
        for k, v in summary["outputs"].items():
            print(f"{k}: {v}")
    return 0


def cli_main(argv: list[str]) -> int:
    """``blender -b -c talkrig ...`` (registered by the extension's register()). Blender wants an exit
    code back, so argparse's exits (``--help``, a usage error) become return values, not SystemExit."""
    try:
        return main(list(argv), prog="blender -b -c talkrig")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


if __name__ == "__main__":
    sys.exit(main())
