"""Operators. Each one runs synchronously from ``execute()`` (scripts, ``blender -b``, where timers and
modal handlers never run); Generate (and Transcribe, in ops_transcribe.py) have a non-blocking
``invoke()`` path for the UI (modal + timer, polling the client without threads)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import bpy

from . import jobs, server_link
from ._deps import rig, server
from .core import export, livelink, mapping
from .core.apply import apply_motion
from .core.target import Target, TargetError, find_target
from .job_modal import PendingJob, ServerJobModal, tag_redraw
from .job_modal import network_allowed as _network_allowed
from .job_modal import prefs_values as _prefs_values

_OK = {"FINISHED"}
_CANCELLED = {"CANCELLED"}


# -- helpers ------------------------------------------------------------------------------------------


def _target(context: bpy.types.Context) -> Target:
    return find_target(context.active_object)


def _profile(settings: Any) -> Any | None:
    s = settings.profile.strip()
    if not s:
        return None
    return mapping.load_profile(bpy.path.abspath(s) if s.startswith("//") or "/" in s or "\\" in s else s)


def _show_mapping(settings: Any, target: Target) -> Any:
    """Put the mapping report (what matches, what does not) into the panel; returns the report.
    Called by Check mapping and before every operator that keys, so the panel always shows what a take
    is about to be written onto (while a generate job runs, before anything is written)."""
    rep = mapping.report(target.shape_names, target.bone_names, _profile(settings))
    settings.report = "\n".join([target.describe(), *rep.lines()])
    return rep


_tag_redraw = tag_redraw


def _connect(context: bpy.types.Context, op: bpy.types.Operator) -> Any | None:
    """A client whose server answers (starting a local one if the preferences say so), else None + report."""
    pv = _prefs_values(context)
    if not _network_allowed(pv, op):
        return None
    try:
        server_link.check(pv["address"], pv["key"])
    except server_link.ServerLinkError as e:
        if not pv["auto_start"]:
            context.scene.talkrig.server_ok = False
            op.report({"ERROR"}, str(e))
            return None
        try:
            server_link.start_local(pv["address"], pv["python"], pv["engine"])
        except server_link.ServerLinkError as e2:
            op.report({"ERROR"}, str(e2))
            return None
    context.scene.talkrig.server_ok = True
    return server_link.client(pv["address"], pv["timeout"], pv["key"])


def _apply_generated(context: bpy.types.Context, report: Any, motion: Any, audio: Path, start: int,
                     target: Target, withheld: dict[str, Any] | None = None) -> set[str]:
    """Keep the motion as .npz and (if the panel says so) key it as a new take; ``report(levels, msg)``.
    ``withheld``: the panel's transcript that was not sent (no aligner for its language), kept as the
    take's transcript instead of the server's account."""
    settings = context.scene.talkrig
    take = Path(audio).stem
    meta = {**motion.meta, "audio_name": Path(audio).name}
    if withheld is not None:
        meta["transcript"] = withheld
    motion = motion.replace(meta=meta)
    path = jobs.save_generated(motion, take)
    settings.last_motion = str(path)
    if not settings.apply_on_generate:
        report({"INFO"}, f"Generated {motion.n_frames} frames, saved to {path} (press Apply to key it)")
        return _OK
    created = apply_motion(motion, target, profile=_profile(settings), action_name=take, start_frame=start,
                           as_nla=settings.as_nla, scene=context.scene, audio_path=audio)
    names = sorted({a.name for a in created.values()})
    report({"INFO"}, f"Keyed {motion.n_frames} frames into {', '.join(names)}")
    return _OK


class PendingGenerate(PendingJob):
    """A submitted generate job and what to do with its result. The modal operator drives it from its
    timer; anything else that can loop (a test, a script) can drive it the same way."""

    def __init__(self, job: Any, target_root: str, audio: Path, start: int,
                 withheld: dict[str, Any] | None = None) -> None:
        super().__init__(job)
        self.target_root, self.audio, self.start = target_root, audio, start
        self.withheld = withheld

    def finish(self, context: bpy.types.Context, report: Any) -> set[str]:
        failed = self.failed(context, report)
        if failed is not None:
            return failed
        root = bpy.data.objects.get(self.target_root)
        if root is None:
            report({"ERROR"}, "the target character was deleted while generating")
            return _CANCELLED
        try:
            return _apply_generated(context, report, self.job.result, self.audio, self.start, find_target(root),
                                    self.withheld)
        except (TargetError, ValueError) as e:
            report({"ERROR"}, str(e))
            return _CANCELLED


# -- server -----------------------------------------------------------------------------------------------


class TALKRIG_OT_server_check(bpy.types.Operator):
    """Check whether the motion server answers"""

    bl_idname = "talkrig.server_check"
    bl_label = "Connect"

    def execute(self, context):
        pv = _prefs_values(context)
        try:
            hello = server_link.check(pv["address"], pv["key"])
        except server_link.ServerLinkError as e:
            context.scene.talkrig.server_ok = False
            context.scene.talkrig.status = "server unreachable"
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        context.scene.talkrig.server_ok = True
        engine = hello.get("engine") or hello.get("engines") or ""
        context.scene.talkrig.status = f"connected: {engine}" if engine else "connected"
        self.report({"INFO"}, f"Motion server at {pv['address']} answers ({engine})")
        return _OK


class TALKRIG_OT_server_start(bpy.types.Operator):
    """Start a local motion server with the Python set in the preferences"""

    bl_idname = "talkrig.server_start"
    bl_label = "Start local server"

    _timer = None
    _starting: server_link.LocalStart | None = None

    def invoke(self, context, event):
        """From the UI: launch, then wait for the engine to load in a modal timer (the UI stays live)."""
        if bpy.app.background:
            return self.execute(context)
        if server_link.local_server_running():
            self.report({"INFO"}, "The local motion server is already running")
            return _OK
        pv = _prefs_values(context)
        try:
            self._starting = server_link.LocalStart(pv["address"], pv["python"], pv["engine"])
        except server_link.ServerLinkError as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        context.scene.talkrig.status = "starting the local server"
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.2, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        settings = context.scene.talkrig
        try:
            ready = self._starting.tick()
        except server_link.ServerLinkError as e:
            self._end(context)
            settings.server_ok, settings.status = False, "the local server did not start"
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        if not ready:
            return {"PASS_THROUGH"}
        self._end(context)
        settings.server_ok, settings.status = True, "local server running"
        self.report({"INFO"}, f"Local motion server running (pid {self._starting.server.proc.pid}, "
                    f"log {self._starting.server.log_path})")
        return _OK

    def _end(self, context):
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        _tag_redraw(context)

    def cancel(self, context):
        self._end(context)

    def execute(self, context):
        pv = _prefs_values(context)
        try:
            proc = server_link.start_local(pv["address"], pv["python"], pv["engine"])
        except server_link.ServerLinkError as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        context.scene.talkrig.server_ok = True
        self.report({"INFO"}, f"Local motion server running (pid {proc.pid}, log {getattr(proc, 'log_path', '?')})")
        return _OK


class TALKRIG_OT_server_stop(bpy.types.Operator):
    """Stop the local motion server this Blender session started"""

    bl_idname = "talkrig.server_stop"
    bl_label = "Stop local server"

    @classmethod
    def poll(cls, context):
        if not server_link.local_server_running():
            cls.poll_message_set("No local server was started from this Blender session")
            return False
        return True

    def execute(self, context):
        server_link.stop_local()
        context.scene.talkrig.server_ok = False
        return _OK


# -- target ------------------------------------------------------------------------------------------------


class TALKRIG_OT_mapping_report(bpy.types.Operator):
    """Show which ARKit channels map onto the selected character (nothing is written)"""

    bl_idname = "talkrig.mapping_report"
    bl_label = "Check mapping"

    def execute(self, context):
        settings = context.scene.talkrig
        try:
            report = _show_mapping(settings, _target(context))
        except (TargetError, ValueError, FileNotFoundError) as e:
            settings.report = str(e)
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self.report({"INFO"}, report.summary())
        return _OK


class TALKRIG_OT_save_profile(bpy.types.Operator):
    """Save the mapping profile used for the selected character to a file you can edit"""

    bl_idname = "talkrig.save_profile"
    bl_label = "Save profile"

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")
    filter_glob: bpy.props.StringProperty(default="*.toml;*.json", options={"HIDDEN"})
    overwrite: bpy.props.BoolProperty(name="Overwrite", default=False)

    def invoke(self, context, event):
        if not self.filepath:
            self.filepath = str(export.default_export_path(".toml", "profile", _prefs_values(context)["export_dir"] or None))
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.talkrig
        try:
            target = _target(context)
            prof = _profile(settings) or mapping.auto_profile(target.shape_names, target.bone_names)
            path = mapping.save_profile(prof, bpy.path.abspath(self.filepath), overwrite=self.overwrite)
        except (TargetError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        settings.profile_preset = "FILE"
        settings.profile = str(path)
        self.report({"INFO"}, f"Profile saved to {path}; it is now the active profile (edit it, then Check mapping)")
        return _OK


# -- generate ------------------------------------------------------------------------------------------------


class TALKRIG_OT_generate(ServerJobModal, bpy.types.Operator):
    """Generate facial animation from the audio with the motion server (Esc cancels)"""

    bl_idname = "talkrig.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER", "UNDO"}

    synchronous: bpy.props.BoolProperty(
        name="Synchronous", default=False, options={"SKIP_SAVE"},
        description="Block until done (always so in background mode, where timers never run)")

    _timer = None
    _pending: PendingGenerate | None = None
    _starting: server_link.LocalStart | None = None
    _withheld: dict[str, Any] | None = None

    @classmethod
    def poll(cls, context):
        if context.scene.talkrig.running:
            cls.poll_message_set("A generate job is already running")
            return False
        if context.scene.talkrig.transcribing:
            cls.poll_message_set("A transcribe job is running (wait for it, or Cancel it)")
            return False
        return True

    def _prepare(self, context):
        settings = context.scene.talkrig
        target = _target(context)
        _show_mapping(settings, target)
        audio, start = jobs.resolve_audio(settings, context.scene)
        opts = jobs.options_from_settings(settings, context.scene, target)
        self._withheld = jobs.panel_transcript_withheld(settings)
        return target, audio, start, opts

    def execute(self, context):
        settings = context.scene.talkrig
        try:
            target, audio, start, opts = self._prepare(context)
        except (TargetError, jobs.JobError, ValueError, FileNotFoundError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        client = _connect(context, self)
        if client is None:
            return _CANCELLED
        mc = server("client")

        def progress(fraction: float, stage: str) -> None:
            print(f"talkrig: {fraction * 100:5.1f}% {stage}", flush=True)

        try:
            motion = client.generate(str(audio), opts, progress=progress)
        except (mc.ClientError, mc.ServerError, mc.ServerUnavailable, mc.JobCancelled) as e:
            msg = (server_link.unreachable_message(client.address, _prefs_values(context)["key"], detail=str(e))
                   if isinstance(e, mc.ServerUnavailable) else str(e))
            self.report({"ERROR"}, msg)
            settings.status = "failed"
            return _CANCELLED
        settings.status = "done"
        return _apply_generated(context, self.report, motion, audio, start, target, self._withheld)

    def invoke(self, context, event):
        if bpy.app.background or self.synchronous:
            return self.execute(context)
        try:
            target, audio, start, opts = self._prepare(context)
        except (TargetError, jobs.JobError, ValueError, FileNotFoundError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self._request = (target.root.name, audio, start, opts)
        return self._start(context)

    def _submit(self, context) -> bool:
        pv = _prefs_values(context)
        root, audio, start, opts = self._request
        client = server_link.client(pv["address"], pv["timeout"], pv["key"])
        try:
            job = client.submit(str(audio), opts)
        except server("protocol").ClientError as e:
            self.report({"ERROR"}, str(e))
            return False
        server_link.set_job(job)
        self._pending = PendingGenerate(job, root, audio, start, self._withheld)
        context.scene.talkrig.status = "submitted"
        return True


class TALKRIG_OT_cancel(bpy.types.Operator):
    """Cancel the generate or transcribe job in flight"""

    bl_idname = "talkrig.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        job = server_link.current_job()
        if job is None or job.done:
            context.scene.talkrig.running = context.scene.talkrig.transcribing = False
            return _CANCELLED
        job.cancel()
        context.scene.talkrig.status = "cancelling"
        return _OK


class TALKRIG_OT_reroll(bpy.types.Operator):
    """Generate again with the next seed (the previous take is kept)"""

    bl_idname = "talkrig.reroll"
    bl_label = "Re-roll"
    bl_options = {"REGISTER", "UNDO"}

    def execute(self, context):
        context.scene.talkrig.seed += 1
        return bpy.ops.talkrig.generate("EXEC_DEFAULT")

    def invoke(self, context, event):
        context.scene.talkrig.seed += 1
        return bpy.ops.talkrig.generate("INVOKE_DEFAULT")


# -- apply / files ---------------------------------------------------------------------------------------------


class TALKRIG_OT_apply(bpy.types.Operator):
    """Key a motion file (.npz, Live Link .csv, Audio2Face .json) onto the selected character as a new take"""

    bl_idname = "talkrig.apply"
    bl_label = "Apply motion"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="Motion file", subtype="FILE_PATH", default="")
    start_frame: bpy.props.IntProperty(name="Start frame", default=-1, description="-1: the panel's start frame")
    audio_path: bpy.props.StringProperty(name="Audio", subtype="FILE_PATH", default="",
                                         description="Optional sound to add to the sequencer")

    def execute(self, context):
        settings = context.scene.talkrig
        path = bpy.path.abspath(self.filepath or settings.last_motion)
        if not path:
            self.report({"ERROR"}, "no motion file: generate one first or choose a .npz/.csv/.json file")
            return _CANCELLED
        try:
            target = _target(context)
            _show_mapping(settings, target)
            motion = rig("formats").load_motion(path)
            start = self.start_frame if self.start_frame >= 0 else settings.start_frame + settings.offset_frames
            audio = bpy.path.abspath(self.audio_path) if self.audio_path else None
            created = apply_motion(motion, target, profile=_profile(settings), action_name=Path(path).stem,
                                   start_frame=start, as_nla=settings.as_nla, scene=context.scene,
                                   audio_path=audio)
        except (TargetError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self.report({"INFO"}, f"Keyed {motion.n_frames} frames into {', '.join(sorted({a.name for a in created.values()}))}")
        return _OK

    def invoke(self, context, event):
        if self.filepath or context.scene.talkrig.last_motion:
            return self.execute(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}


class TALKRIG_OT_import_livelink(bpy.types.Operator):
    """Import a Live Link Face CSV onto the selected character as a new take"""

    bl_idname = "talkrig.import_livelink"
    bl_label = "Import Live Link CSV"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")
    filter_glob: bpy.props.StringProperty(default="*.csv", options={"HIDDEN"})
    mirror: bpy.props.BoolProperty(name="Mirror left/right", default=False)

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def execute(self, context):
        settings = context.scene.talkrig
        try:
            target = _target(context)
            _show_mapping(settings, target)
            with warnings.catch_warnings(record=True) as notes:  # e.g. long tracking-lost gaps in the take
                warnings.simplefilter("always")
                created = livelink.import_livelink_csv(
                    bpy.path.abspath(self.filepath), target, profile=_profile(settings),
                    start_frame=settings.start_frame + settings.offset_frames, as_nla=settings.as_nla,
                    mirror=self.mirror, scene=context.scene)
        except (TargetError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        for note in notes:
            self.report({"WARNING"}, str(note.message))
        self.report({"INFO"}, f"Imported into {', '.join(sorted({a.name for a in created.values()}))}")
        return _OK


class _ExportBase:
    filepath: bpy.props.StringProperty(subtype="FILE_PATH", default="")
    overwrite: bpy.props.BoolProperty(name="Overwrite", default=False)
    suffix = ""

    def _path(self, context) -> str:
        """The chosen file, or next to the .blend (or in the preferences' export folder) named after the take."""
        if self.filepath:
            return bpy.path.abspath(self.filepath)
        take = None
        try:
            take = export._active_take_name(_target(context).objects)
        except TargetError:
            pass
        return str(export.default_export_path(self.suffix, take, _prefs_values(context)["export_dir"] or None))

    def invoke(self, context, event):
        self.filepath = self._path(context)
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def _write(self, path: str, objects: list) -> Path:
        raise NotImplementedError

    def execute(self, context):
        try:
            path = self._write(self._path(context), _target(context).objects)
        except (TargetError, export.ExportError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self.report({"INFO"}, f"Wrote {path}")
        return _OK


class TALKRIG_OT_export_livelink(_ExportBase, bpy.types.Operator):
    """Write the selected character's animation (scene range) as a Live Link Face CSV"""

    bl_idname = "talkrig.export_livelink"
    bl_label = "Export Live Link CSV"
    suffix = ".csv"

    def execute(self, context):
        try:
            path = livelink.export_livelink_csv(self._path(context), _target(context),
                                                profile=_profile(context.scene.talkrig), overwrite=self.overwrite,
                                                scene=context.scene)
        except (TargetError, ValueError, OSError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self.report({"INFO"}, f"Wrote {path}")
        return _OK


class TALKRIG_OT_export_fbx(_ExportBase, bpy.types.Operator):
    """Export the character with its shape-key and head animation as FBX (one baked take)"""

    bl_idname = "talkrig.export_fbx"
    bl_label = "Export FBX"
    suffix = ".fbx"

    def _write(self, path: str, objects: list) -> Path:
        return export.export_fbx(path, objects, overwrite=self.overwrite)


class TALKRIG_OT_export_gltf(_ExportBase, bpy.types.Operator):
    """Export the character with its morph-target and head animation as glTF binary (.glb)"""

    bl_idname = "talkrig.export_gltf"
    bl_label = "Export glTF"
    suffix = ".glb"

    def _write(self, path: str, objects: list) -> Path:
        return export.export_gltf(path, objects, overwrite=self.overwrite)


classes = (
    TALKRIG_OT_server_check, TALKRIG_OT_server_start, TALKRIG_OT_server_stop,
    TALKRIG_OT_mapping_report, TALKRIG_OT_save_profile,
    TALKRIG_OT_generate, TALKRIG_OT_cancel, TALKRIG_OT_reroll,
    TALKRIG_OT_apply, TALKRIG_OT_import_livelink, TALKRIG_OT_export_livelink,
    TALKRIG_OT_export_fbx, TALKRIG_OT_export_gltf,
)  # fmt: skip
register, unregister = bpy.utils.register_classes_factory(classes)
