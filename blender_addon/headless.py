"""The Blender batch runner: audio or motion files -> keyed character -> .glb/.gltf/.fbx/.blend, motion
files and an .mp4 preview. Its flags have the names `talkrig animate` uses (--character, --out, --render,
--overwrite, --fps, --target, --profile, the generation options).

Three ways in, one parser and the same steps (:func:`run_job`):
- with the bpy wheel: ``python -m blender_addon.headless line.wav --character hero.blend --out line.fbx``
- inside Blender, as the extension's CLI command: ``blender -b hero.blend -c talkrig line.wav --out line.glb``
- a job file: ``python -m blender_addon.headless --job-file JOBS.json``, what `talkrig animate` runs after
  generating the motion itself: each job is the same flags (``argv``) plus its takes (a motion file and
  the audio it was made from); progress goes to stdout as lines ``@talkrig {json}``.

Audio is animated through the motion server (the client's blocking API; Blender never runs a model);
nothing relies on timers or modal operators, which never run in background mode.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bpy

from motion_server import client as motion_client
from motion_server import options as gen_options
from motion_server.animate import plan  # `talkrig animate`'s output rules and job-file format
from rig_mapping import atomic, formats

from . import server_link
from ._deps import asset
from .core import export, mapping, scene_setup
from .core.apply import apply_motion, scene_fps
from .core.demo_head import CREDIT, build_demo_head
from .core.render import RenderError, fps_pair, render_preview
from .core.target import Target, TargetError, find_target
from .core.transcript import sidecar_transcript, take_line, take_properties

_OWN_FLAGS = ("fps",)  # option-table flags this runner defines itself (--fps is the scene's rate here)
PROGRESS_PREFIX = plan.PROGRESS_PREFIX
JOBS_VERSION = plan.JOBS_VERSION

EventFn = Callable[[dict[str, Any]], None]


class HeadlessError(RuntimeError):
    """A batch step failed; the message says which and how to fix it."""


class UsageError(ValueError):
    """Arguments that cannot work; in a job file it fails that job only."""


@dataclass
class Take:
    """One clip keyed into the scene. ``motion``: a motion file; None: generated from ``audio`` by the
    motion server. ``audio``: the sound (strip in the sequencer, the preview's soundtrack)."""

    name: str
    motion: Path | None = None
    audio: Path | None = None

    @property
    def source(self) -> Path:
        src = self.motion if self.motion is not None else self.audio
        assert src is not None
        return src


@dataclass
class Outputs:
    """What one run writes: files made from the keyed scene, motion files (one per take), the preview."""

    scene: list[Path] = field(default_factory=list)
    motion: list[tuple[int, Path]] = field(default_factory=list)  # (take index, file)
    render: Path | None = None


# Old flag names (before the runner took `talkrig animate`'s names): they still work, with a note.
# old flag -> (new flag, value it stands for or None: the old flag's own value)
_RENAMED: dict[str, tuple[str, str | None]] = {
    "--audio": ("AUDIO", None),  # audio files are arguments, as in `talkrig animate`
    "--scene": ("--character", None),
    "--demo-head": ("--character", plan.DEMO_CHARACTER),
    "--fbx": ("--out", None),
    "--gltf": ("--out", None),
    "--save": ("--out", None),
    "--preview": ("--render", None),
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting when ``raise_errors`` (a job in a job file)."""

    raise_errors = False

    def error(self, message: str):  # type: ignore[override]
        if self.raise_errors:
            raise UsageError(message)
        super().error(message)


class _Renamed(argparse.Action):
    """An old flag name: does what the new one does (collected in ``old_<dest>``), says the new name."""

    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        self.new, self.value = _RENAMED[option_strings[0]]
        super().__init__(option_strings, dest, nargs=0 if self.value is not None else None, help=argparse.SUPPRESS,
                         default=[], **kw)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        value = self.value if self.value is not None else values
        use = f"give audio files as arguments ({value})" if self.new == "AUDIO" else f"use {self.new} {value}"
        print(f"talkrig: note: {option_string} is an old name; {use} instead, as in `talkrig animate`",
              file=sys.stderr)
        setattr(namespace, self.dest, [*getattr(namespace, self.dest), (option_string, value)])


EPILOG = """\
inputs: audio files are animated through the motion server (--server, --start-server); --motion FILE
  keys a motion file instead. Several inputs become consecutive takes in one scene (NLA strips, --gap
  frames apart).
outputs (by --out suffix, repeatable):
  .glb .gltf .fbx .blend   the character with every take keyed (a file; a folder or an --out pattern
                           with {stem} is named after the first input). Default: ./talkrig_out/<stem>.glb
                           (none when only --render is given)
  .npz .csv .json          the motion of each take: TalkRig npz, Live Link Face CSV, Audio2Face JSON
                           (several takes: a folder or a pattern such as 'curves/{stem}.csv')
  Existing files are never replaced without --overwrite.
the same flags as `talkrig animate` (which generates in its own process and hands the Blender part to
this runner as --job-file); old names (--audio, --scene, --demo-head, --fbx, --gltf, --save, --preview)
still work and print the new one.

examples:
  python -m blender_addon.headless line.wav --character hero.blend --out out/line.fbx --start-server
  blender -b hero.blend -c talkrig a.wav b.wav --out out/ab.blend --server tcp://127.0.0.1:5557
  python -m blender_addon.headless --motion take.csv --character demo --out take.glb --render
"""


def build_parser(prog: str = "talkrig") -> _Parser:
    ap = _Parser(prog=prog, description="TalkRig batch runner: animate a character from speech audio or motion "
                 "files, headless.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="*", metavar="AUDIO", type=Path,
                    help="speech audio file(s), animated through the motion server")
    src = ap.add_argument_group("input")
    src.add_argument("--motion", action="append", default=[], type=Path, metavar="FILE",
                     help="a motion file as a take instead of generating (.npz, Live Link .csv, Audio2Face .json); "
                          "repeatable")
    src.add_argument("--job-file", metavar="JOBS.json",
                     help="run the jobs in this file (written by `talkrig animate`): {'version': 2, 'jobs': "
                          "[{'argv': [these flags], 'takes': [{'name', 'motion', 'audio'}]}]}")
    io = ap.add_argument_group("files")
    io.add_argument("--out", "-o", action="append", metavar="PATH",
                    help="output file, folder or {stem} pattern, by suffix (see below); repeatable")
    io.add_argument("--character", metavar=f"FILE|{plan.DEMO_CHARACTER}",
                    help=f"character to animate: a .blend (opened), .glb/.gltf/.fbx (imported into an empty scene) "
                         f"or '{plan.DEMO_CHARACTER}' (the bundled demo head); default: the scene Blender has open")
    io.add_argument("--overwrite", action="store_true", help="replace existing output files")
    io.add_argument("--target", metavar="OBJECT",
                    help="object name of the character (default: the first with ARKit-like shape keys or head/jaw "
                         "bones)")
    io.add_argument("--profile", metavar="NAME|FILE",
                    help="mapping profile onto the character: preset name or .toml/.json file (default: automatic)")
    scn = ap.add_argument_group("scene")
    fps = gen_options.option("fps")
    scn.add_argument("--fps", type=gen_options.arg_type(fps),
                     help="scene frame rate, set first (e.g. 30, 24, 29.97); default: an opened .blend keeps its own, "
                          f"a new scene plays at the motion's rate ({fps.default_text()} for generated takes)")
    scn.add_argument("--start-frame", type=int, help="first frame of the first take (default: the scene's start)")
    scn.add_argument("--gap", type=int, default=12, help="frames between consecutive takes (default 12)")
    scn.add_argument("--nla", action="store_true", help="add takes as NLA strips (always so for several takes)")
    rnd = ap.add_argument_group("preview video")
    rnd.add_argument("--render", nargs="?", const=plan.RENDER_NEXT_TO_OUT, metavar="OUT.mp4",
                     help="also render an H.264/AAC preview; without a path it goes next to --out as <stem>.mp4")
    rnd.add_argument("--resolution", default="480x480", metavar="WxH", help="preview size (default 480x480)")
    rnd.add_argument("--samples", type=int,
                     help="Cycles samples (default 16) / Workbench anti-aliasing samples (default: FXAA)")
    rnd.add_argument("--render-engine", choices=plan.RENDER_ENGINES, default="workbench",
                     help="workbench (fast, default), cycles (CPU path tracing) or eevee (needs a GPU)")
    gen = ap.add_argument_group("generation (audio inputs)")
    gen.add_argument("--server", default=server_link.DEFAULT_ADDRESS, metavar="ADDR",
                     help=f"motion server address (default {server_link.DEFAULT_ADDRESS})")
    gen.add_argument("--server-key", default="", help="server public key (remote servers)")
    gen.add_argument("--start-server", action="store_true", help="start a local server if none answers")
    gen.add_argument("--python", default="", help="Python with TalkRig installed, for --start-server")
    gen.add_argument("--keep-server", action="store_true",
                     help="leave a server started by --start-server running when the job ends (default: stop it)")
    gen.add_argument("--engine", default="", help="engine for --start-server (diffusion, procedural, energy)")
    gen.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server (default 120)")
    # --style ... --no-transcribe: the same flags, limits and help as `talkrig animate` (the option table)
    gen_options.add_arguments(gen, exclude=_OWN_FLAGS)
    gen.add_argument("--transcript", metavar="TEXT",
                     help="what is said (one audio input only); default: <audio stem>.txt beside the audio, if any")
    gen.add_argument("--no-transcript-files", dest="transcript_files", action="store_false",
                     help="ignore <stem>.txt files beside the audio (generate from the audio alone)")
    ap.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    for old, (new, _value) in _RENAMED.items():
        dest = "inputs" if new == "AUDIO" else new.lstrip("-")
        ap.add_argument(old, action=_Renamed, dest=f"old_{dest}")
    return ap


def parse_args(argv: list[str], prog: str = "talkrig", raise_errors: bool = False) -> argparse.Namespace:
    """Parse ``argv`` (flags and audio arguments in any order) and fold the old flag names into the new."""
    ap = build_parser(prog)
    ap.raise_errors = raise_errors
    args = ap.parse_intermixed_args(argv)
    args.inputs = [*args.inputs, *(Path(v) for _, v in args.old_inputs)]
    args.out = [*(args.out or []), *(v for _, v in args.old_out)]
    for dest in ("character", "render"):
        old = getattr(args, f"old_{dest}")
        if not old:
            continue
        given = [f"--{dest} {getattr(args, dest)}"] if getattr(args, dest) is not None else []
        given += [f"{flag} {v}".strip() if flag != "--demo-head" else flag for flag, v in old]
        if len(given) > 1:
            ap.error(f"{' and '.join(given)}: give one --{dest}")
        setattr(args, dest, old[0][1])
    for dest in ("inputs", "out", "character", "render"):
        delattr(args, f"old_{dest}")
    return args


def takes_from_args(args: argparse.Namespace) -> list[Take]:
    """The takes the flags name: audio arguments (generated), then --motion files, in that order."""
    takes = [Take(name=a.stem, audio=a) for a in args.inputs]
    takes += [Take(name=m.stem, motion=m) for m in args.motion]
    return takes


# -- steps (flag mode and job files alike) --------------------------------------------------------------

def check_inputs(args: argparse.Namespace, takes: list[Take]) -> None:
    if not takes:
        raise UsageError("nothing to animate: give audio files (generated through the motion server) or "
                         "--motion FILE")
    for t in takes:
        for kind, p in (("motion", t.motion), ("audio", t.audio)):
            if p is not None and not p.is_file():
                raise UsageError(f"{kind} file not found: {p}")
    if args.transcript and sum(1 for t in takes if t.motion is None) > 1:
        raise UsageError("--transcript describes one recording; give a single audio file with it")
    try:
        plan.check_character(args.character)
        plan.check_samples(args.samples)
        args.resolution_wh = plan.parse_resolution(args.resolution)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def plan_outputs(args: argparse.Namespace, takes: list[Take]) -> Outputs:
    """Name every output by `talkrig animate`'s rules (motion_server.animate.plan) and refuse, before any
    work, one that would replace an input or an existing file (without --overwrite), or cannot be written."""
    stem, n = takes[0].name, len(takes)
    specs: list[str | None] = list(args.out) or ([None] if args.render is None else [])
    outs = Outputs()
    try:
        for spec in specs:
            first = plan.out_path(spec, stem, 1)
            if first.suffix.lower() in plan.MOTION_SUFFIXES:  # a motion file holds one take
                outs.motion += [(i, plan.out_path(spec, t.name, n)) for i, t in enumerate(takes)]
            else:  # the scene holds every take: named after the first
                outs.scene.append(first)
        nearest = outs.scene[0] if outs.scene else outs.motion[0][1] if outs.motion else None
        outs.render = plan.render_path(args.render, nearest, stem, 1)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    style = args.style if args.style and formats.names_motion_file(args.style) else None
    profile = args.profile if args.profile and Path(args.profile).is_file() else None
    character = None if args.character in (None, plan.DEMO_CHARACTER) else args.character
    guard = plan.OutputGuard([p for t in takes for p in (t.motion, t.audio) if p is not None],
                              (character, style, profile), args.overwrite)
    owned = [(p, takes[0].source) for p in outs.scene] + [(p, takes[i].source) for i, p in outs.motion]
    for p, owner in owned + ([(outs.render, takes[0].source)] if outs.render is not None else []):
        why = guard.problem(p, owner)
        if why:
            raise HeadlessError(why)
    if outs.render is not None and shutil.which("ffmpeg") is None:
        raise HeadlessError("--render needs ffmpeg to write the video (sudo apt-get install ffmpeg); leave out "
                            "--render to write only the animation")
    for p in [*outs.scene, *(p for _, p in outs.motion), outs.render]:
        if p is not None:
            try:  # sweep a killed run's temporary files; refuse an unwritable folder before any work
                atomic.prepare_output(p)
            except OSError as exc:
                raise HeadlessError(str(exc)) from None
    return outs


def find_character(scene: bpy.types.Scene, name: str | None, source: str) -> Target:
    """The character named ``name``, else the first mesh with ARKit-like shape keys, else the first
    armature with head/jaw bones."""
    if name:
        ob = scene.objects.get(name)
        if ob is None:
            raise HeadlessError(f"{source}: no object named {name!r}; objects: "
                                f"{', '.join(o.name for o in scene.objects) or '(none)'}")
        return find_target(ob)
    candidates = [o for o in scene.objects if o.type == "MESH" and o.data.shape_keys is not None]
    candidates += [o for o in scene.objects if o.type == "ARMATURE"]
    for ob in candidates:
        try:
            return find_target(ob)
        except TargetError:
            continue
    raise HeadlessError(
        f"{source}: no mesh with ARKit-like shape keys (jawOpen, eyeBlink_L, JawOpen...) and no armature with "
        f"head/jaw bones; give a character with facial shape keys (--character FILE, or --character "
        f"{plan.DEMO_CHARACTER}), name it with --target, or map its shapes with --profile"
    )


def _empty_scene() -> None:
    # the factory startup file, emptied; not read_factory_settings, which also resets the preferences and
    # so disables this extension (and its `talkrig` command) in the middle of the run
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)


def load_character(character: str | None, target: str | None) -> tuple[bpy.types.Scene, Target, bool]:
    """(scene, target, fresh): the scene holding the character; ``fresh`` when it was made for this run
    (demo head, imported file) rather than a user's scene (an opened .blend, or the one already open)."""
    if character is None:
        scene = bpy.context.scene
        return scene, find_character(scene, target, bpy.data.filepath or "the open scene"), False
    if character == plan.DEMO_CHARACTER:
        _empty_scene()
        scene = bpy.context.scene
        build_demo_head(scene, asset_path=asset("ict_face_arkit.npz"))
        return scene, find_character(scene, target, "the demo head"), True
    p = Path(character)
    if p.suffix.lower() == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(p.resolve()), load_ui=False)
        scene = bpy.context.scene
        return scene, find_character(scene, target, p.name), False
    _empty_scene()
    try:
        if p.suffix.lower() in (".glb", ".gltf"):
            bpy.ops.import_scene.gltf(filepath=str(p))
        else:
            bpy.ops.import_scene.fbx(filepath=str(p))
    except RuntimeError as exc:
        raise HeadlessError(f"could not import {p.name}: {exc}") from exc
    scene = bpy.context.scene
    return scene, find_character(scene, target, p.name), True


def _progress_printer(label: str) -> Callable[[float, str], None]:
    state = {"last": -1}

    def progress(fraction: float, stage: str) -> None:
        pct = int(fraction * 100)
        if pct != state["last"]:
            state["last"] = pct
            print(f"\r{label}: {pct:3d}% {stage:<24}", end="", file=sys.stderr, flush=True)
            if pct >= 100:
                print(file=sys.stderr)

    return progress


def _generate(args: argparse.Namespace, audio: Path, fps: float, style_clip: Any) -> Any:
    """The motion for ``audio`` from the motion server (started with --start-server if none answers)."""
    mc = motion_client
    # unset (None) options are left out: the server applies the model's / the style's own values
    opts: dict[str, Any] = {k: v for k, v in gen_options.from_arguments(args, exclude=_OWN_FLAGS).items()
                            if v is not None and k != "style"}
    opts["fps"] = fps
    try:
        text = (args.transcript or "").strip() or (sidecar_transcript(audio) if args.transcript_files else None)
    except ValueError as exc:
        raise HeadlessError(f"{exc}; fix it, pass --transcript, or --no-transcript-files") from None
    if text:
        opts["transcript"] = text
    if style_clip is not None:
        opts["style_reference"] = style_clip
    elif args.style:
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


def _load(path: Path) -> Any:
    try:
        return formats.load_motion(path)
    except (OSError, ValueError) as exc:
        raise HeadlessError(f"{path}: not a usable motion file: {exc}") from None


def _write_scene(p: Path, target: Target, takes: list[dict[str, Any]], overwrite: bool, demo: bool) -> Path:
    suffix = p.suffix.lower()
    if suffix in (".glb", ".gltf"):
        # One take: the assigned take is the clip. Several live in NLA strips: one glTF animation each.
        extra: dict[str, Any] = {} if len(takes) == 1 else {"export_animation_mode": "ACTIONS"}
        if demo:
            extra["export_copyright"] = CREDIT  # the demo head's license asks for attribution
        return export.export_gltf(p, target.objects, overwrite=overwrite,
                                  clip_name=takes[0]["name"][0] if len(takes) == 1 else None, **extra)
    if suffix == ".fbx":
        return export.export_fbx(p, target.objects, overwrite=overwrite)
    return export.save_blend_atomic(p, overwrite=overwrite)


def run_job(args: argparse.Namespace, takes: list[Take], emit: EventFn | None = None) -> dict[str, Any]:
    """The whole batch job: character, takes keyed one after another, exports, motion files, preview.
    Returns a summary (target, fps, takes with frame ranges, outputs, timings); ``emit`` gets stage
    events ({"type": "stage"|"frames", ...})."""
    def stage(name: str) -> None:
        if emit is not None:
            emit({"type": "stage", "stage": name})

    t0 = time.perf_counter()
    check_inputs(args, takes)
    outs = plan_outputs(args, takes)
    # before any generation: a bad style clip or profile fails now, not after minutes of work
    try:
        style_clip = formats.style_reference(args.style) if any(t.motion is None for t in takes) else None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--style {args.style}: {exc}") from None
    try:
        profile = mapping.load_profile(args.profile) if args.profile else None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--profile {args.profile}: {exc}") from None
    loaded = {i: _load(t.motion) for i, t in enumerate(takes) if t.motion is not None}

    stage("character")
    scene, target, fresh = load_character(args.character, args.target)
    if args.fps:
        scene.render.fps, scene.render.fps_base = fps_pair(args.fps)
    elif fresh:  # a new scene plays at the motion's rate; a user's scene keeps its own
        first = loaded.get(0)
        scene.render.fps, scene.render.fps_base = fps_pair(first.fps if first is not None
                                                           else gen_options.option("fps").default)
    fps = scene_fps(scene)
    start = int(args.start_frame if args.start_frame is not None else scene.frame_start)
    as_nla = args.nla or len(takes) > 1

    summary_takes: list[dict[str, Any]] = []
    motions: list[Any] = []
    for i, take in enumerate(takes):
        t = time.perf_counter()
        if take.motion is None:
            stage("generate")
            motion = _generate(args, take.source, fps, style_clip)
        else:
            motion = loaded[i]
        t_gen = time.perf_counter() - t
        stage("keys")
        t = time.perf_counter()
        created = apply_motion(motion, target, profile=profile, action_name=take.name, start_frame=start,
                               as_nla=as_nla, scene=scene, audio_path=take.audio, set_frame_range=False)
        n = motion.resample(fps).n_frames
        motions.append(motion)
        summary_takes.append({"name": sorted({a.name for a in created.values()}), "source": str(take.source),
                              "frame_start": start, "frame_end": start + n - 1, "generate_s": round(t_gen, 3),
                              "transcript": take_properties(motion.meta.get("transcript")) or None,
                              "apply_s": round(time.perf_counter() - t, 3)})
        start += n + int(args.gap)
    scene_setup.fit_frame_range(scene, summary_takes[0]["frame_start"], summary_takes[-1]["frame_end"])

    written: list[str] = []
    summary: dict[str, Any] = {"target": target.name, "fps": fps, "takes": summary_takes, "outputs": written}
    if outs.scene or outs.motion:
        stage("export")
    for p in outs.scene:
        p.parent.mkdir(parents=True, exist_ok=True)
        _write_scene(p, target, summary_takes, args.overwrite, args.character == plan.DEMO_CHARACTER)
        written.append(str(p))
    for i, p in outs.motion:
        p.parent.mkdir(parents=True, exist_ok=True)
        formats.save_motion(motions[i], p, overwrite=args.overwrite)
        written.append(str(p))
    if outs.render is not None:
        stage("render")
        outs.render.parent.mkdir(parents=True, exist_ok=True)
        sounds = [t.audio for t in takes if t.audio is not None]
        stats = render_preview(
            outs.render, sounds[0] if len(takes) == 1 and sounds else None, scene.frame_start, scene.frame_end, fps,
            resolution=args.resolution_wh, samples=args.samples, engine=args.render_engine,
            overwrite=args.overwrite, objects=target.meshes or target.objects, scene=scene,
            progress=None if emit is None else lambda done, total: emit({"type": "frames", "done": done,
                                                                         "total": total}),
        )
        written.append(str(outs.render))
        summary.update(render_frames=stats.frames, render_seconds=round(stats.seconds, 3))
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    return summary


# -- entry points ---------------------------------------------------------------------------------------

# Errors whose message is already written for the user; anything else also shows its type.
_USER_ERRORS = (HeadlessError, UsageError, TargetError, export.ExportError, RenderError, OSError, ValueError)


def emit_line(event: dict[str, Any]) -> None:
    """One progress event for the parent process (motion_server.animate.blender_bridge)."""
    sys.stdout.write(PROGRESS_PREFIX + json.dumps(event) + "\n")
    sys.stdout.flush()


def run_jobs_file(path: str | Path, prog: str = "talkrig") -> int:
    """Every job of a job file, in this process; a failing job reports an error event and the next
    job still runs. Returns 1 if any failed."""
    try:
        spec = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HeadlessError(f"cannot read the job file {path}: {exc}") from None
    if not isinstance(spec, dict) or spec.get("version") != JOBS_VERSION:
        raise HeadlessError(f"{path}: not a version {JOBS_VERSION} job file (write it with the same TalkRig version)")
    failed = 0
    for i, job in enumerate(spec.get("jobs", [])):
        emit_line({"type": "start", "job": i, "name": (job.get("takes") or [{}])[0].get("name")})
        try:
            args = parse_args([str(a) for a in job.get("argv", [])], prog, raise_errors=True)
            takes = ([Take(name=t["name"], motion=_path(t.get("motion")), audio=_path(t.get("audio")))
                      for t in job["takes"]] if "takes" in job else takes_from_args(args))
            result = run_job(args, takes, lambda ev, i=i: emit_line({**ev, "job": i}))
        except Exception as exc:  # one bad job must not stop the batch
            failed += 1
            msg = str(exc) if isinstance(exc, _USER_ERRORS) else f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
            emit_line({"type": "error", "job": i, "error": msg})
            continue
        emit_line({"type": "done", "job": i, **result})
    return 1 if failed else 0


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def main(argv: list[str] | None = None, prog: str = "talkrig") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv, prog)
    if args.job_file and vars(args) != vars(parse_args(["--job-file", args.job_file], prog)):
        build_parser(prog).error("--job-file runs the jobs in the file: give the other flags inside it (each job's argv)")
    had_server = server_link.local_server_running()
    try:
        if args.job_file:
            return run_jobs_file(args.job_file, prog)
        summary = run_job(args, takes_from_args(args))
    except _USER_ERRORS as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    finally:
        # a server this run started (--start-server) runs detached: stop it unless asked to keep it
        if not had_server and not args.keep_server and server_link.local_server_running():
            server_link.stop_local()
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for t in summary["takes"]:
            print(f"{', '.join(t['name'])}: frames {t['frame_start']}-{t['frame_end']} from {t['source']}")
            if t.get("transcript"):
                print(f"  {take_line(t['transcript'])}")
        for p in summary["outputs"]:
            print(f"wrote {p}")
    return 0


def cli_main(argv: list[str]) -> int:
    """``blender -b -c talkrig ...`` (registered by the extension's register()). Blender wants an exit
    code back, so argparse's exits (``--help``, a usage error) become return values, not SystemExit."""
    try:
        return main(list(argv), prog="blender -b -c talkrig")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)


if __name__ == "__main__":
    sys.exit(main(prog="python -m blender_addon.headless"))
