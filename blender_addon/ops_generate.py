"""Generate a take from the audio (motion server), Cancel it, Re-roll it with the next seed, and Apply a
motion file as a take.

Each runs synchronously from ``execute()`` (scripts, ``blender -b``, where timers and modal handlers never
run); Generate has a non-blocking ``invoke()`` path for the UI (modal + timer, polling the client without
threads, job_modal.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from motion_server import client as motion_client
from rig_mapping import formats

from . import jobs, server_link
from .core.apply import apply_motion
from .core.target import TargetError, find_target
from .job_modal import PendingJob, ServerJobModal, connect, failure_message, prefs_values
from .poll import allowed, job_running, no_audio, no_character, no_job, no_server

_OK = {"FINISHED"}
_CANCELLED = {"CANCELLED"}
# What Generate and Re-roll need: no job in flight, a character, audio, a server that answers or will start.
_GENERATE_CHECKS = (job_running, no_character, no_audio, no_server)


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
            msg = jobs.keep_generated(context.scene.talkrig, context.scene, self.job.result, self.audio,
                                      self.start, find_target(root), self.withheld)
        except (TargetError, ValueError) as e:
            report({"ERROR"}, str(e))
            return _CANCELLED
        report({"INFO"}, msg)
        return _OK


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
        return allowed(cls, context, *_GENERATE_CHECKS)

    def _prepare(self, context):
        settings = context.scene.talkrig
        target = find_target(context.active_object)
        jobs.show_mapping(settings, target)
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
        client = connect(context, self)
        if client is None:
            return _CANCELLED

        def progress(fraction: float, stage: str) -> None:
            print(f"talkrig: {fraction * 100:5.1f}% {stage}", flush=True)

        try:
            motion = client.generate(str(audio), opts, progress=progress)
        except motion_client.ClientError as e:  # ServerError, ServerUnavailable, JobCancelled are ClientErrors
            self.report({"ERROR"}, failure_message(context, client.address, e))
            settings.status = "failed"
            return _CANCELLED
        settings.status = "done"
        try:
            msg = jobs.keep_generated(settings, context.scene, motion, audio, start, target, self._withheld)
        except (TargetError, ValueError) as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        self.report({"INFO"}, msg)
        return _OK

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
        pv = prefs_values(context)
        root, audio, start, opts = self._request
        client = server_link.client(pv["address"], pv["timeout"], pv["key"])
        try:
            job = client.submit(str(audio), opts)
        except motion_client.ClientError as e:
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

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, no_job)

    def execute(self, context):
        job = server_link.current_job()
        if job is None or job.done:  # a job flag left set without a job: clear it
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

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, *_GENERATE_CHECKS)

    def execute(self, context):
        context.scene.talkrig.seed += 1
        return bpy.ops.talkrig.generate("EXEC_DEFAULT")

    def invoke(self, context, event):
        context.scene.talkrig.seed += 1
        return bpy.ops.talkrig.generate("INVOKE_DEFAULT")


class TALKRIG_OT_apply(bpy.types.Operator):
    """Key a motion file (.npz, Live Link .csv, Audio2Face .json) onto the selected character as a new take"""

    bl_idname = "talkrig.apply"
    bl_label = "Apply motion"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="Motion file", subtype="FILE_PATH", default="")
    start_frame: bpy.props.IntProperty(name="Start frame", default=-1, description="-1: the panel's start frame")
    audio_path: bpy.props.StringProperty(name="Audio", subtype="FILE_PATH", default="",
                                         description="Optional sound to add to the sequencer")

    @classmethod
    def poll(cls, context):
        # No motion yet is no reason to grey it out: invoke() then asks for a file.
        return allowed(cls, context, no_character)

    def execute(self, context):
        settings = context.scene.talkrig
        path = bpy.path.abspath(self.filepath or settings.last_motion)
        if not path:
            self.report({"ERROR"}, "no motion file: generate one first or choose a .npz/.csv/.json file")
            return _CANCELLED
        try:
            target = find_target(context.active_object)
            jobs.show_mapping(settings, target)
            motion = formats.load_motion(path)
            start = self.start_frame if self.start_frame >= 0 else settings.start_frame + settings.offset_frames
            audio = bpy.path.abspath(self.audio_path) if self.audio_path else None
            created = apply_motion(motion, target, profile=jobs.profile_for(settings), action_name=Path(path).stem,
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


classes = (TALKRIG_OT_generate, TALKRIG_OT_cancel, TALKRIG_OT_reroll, TALKRIG_OT_apply)
register, unregister = bpy.utils.register_classes_factory(classes)
