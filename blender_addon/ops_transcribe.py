"""Transcribe: the motion server recognises what the chosen audio says (Whisper) and the text goes into
the panel's Transcript field, for the animator to read and correct before Generate.

Like Generate: ``invoke()`` submits the job and polls it from a modal timer (progress bar, Esc or the
panel's Cancel), ``execute()`` blocks (scripts and ``blender -b``, where timers and modal handlers never
run). Text already in the field is never replaced without asking: the UI asks first, scripts pass
``replace=True``.
"""

from __future__ import annotations

from typing import Any

import bpy

from motion_server import client as motion_client

from . import jobs, server_link
from .core.transcript import no_aligner_note, transcribed_message
from .job_modal import PendingJob, ServerJobModal, connect, failure_message, prefs_values
from .poll import allowed, job_running, no_audio, no_server

_OK = {"FINISHED"}
_CANCELLED = {"CANCELLED"}

_TYPED = ("The Transcript field has text: Transcribe would replace it. Clear the field first, or confirm "
          "(scripts: replace=True)")


def fill_transcript(settings: Any, tr: dict[str, Any], replace: bool) -> tuple[str, str]:
    """Put a transcribe result into the panel; returns (report level, message). Text typed into the field
    while the job ran is kept unless ``replace`` (the user agreed to replace it when starting)."""
    level, msg = transcribed_message(tr)
    text = str(tr.get("text") or "").strip()
    lang = str(tr.get("language") or "")
    if text:
        if settings.transcript.strip() and not replace:
            return "WARNING", "The Transcript field was edited while transcribing; it is kept (" + msg + ")"
        settings.transcript = text
        settings.transcript_language = lang
    settings.status = (f"transcribed [{lang}]" if level == "INFO" else
                       no_aligner_note(lang) if text else "no speech recognised")
    return level, msg


class PendingTranscribe(PendingJob):
    """A submitted transcribe job; the modal operator drives it from its timer (a test can loop on it)."""

    status_prefix = "transcribe "

    def __init__(self, job: Any, replace: bool) -> None:
        super().__init__(job)
        self.replace = replace

    def finish(self, context: bpy.types.Context, report: Any) -> set[str]:
        settings = context.scene.talkrig
        failed = self.failed(context, report)
        if failed is not None:
            return failed
        level, msg = fill_transcript(settings, self.job.result, self.replace)
        report({level}, msg)
        return _OK


def _ask_to_replace(context: bpy.types.Context) -> None:
    # Not invoke_confirm: its OK runs execute(), which would block the UI for the whole recognition. This
    # popup's button invokes the operator again with replace=True, so the job still runs in the modal.
    def draw(menu: Any, _context: bpy.types.Context) -> None:
        col = menu.layout.column()
        col.label(text="The Transcript field has text. Replace it with the recognised text?")
        col.operator_context = "INVOKE_DEFAULT"
        col.operator("talkrig.transcribe", text="Replace", icon="FILE_REFRESH").replace = True

    context.window_manager.popup_menu(draw, title="Transcribe", icon="QUESTION")


class TALKRIG_OT_transcribe(ServerJobModal, bpy.types.Operator):
    """Recognise what the audio says (on the motion server) and put it in the Transcript field to read and
    correct (Esc cancels)"""

    bl_idname = "talkrig.transcribe"
    bl_label = "Transcribe"
    bl_options = {"UNDO"}  # one Ctrl+Z gives the field back; no redo panel (that would transcribe again)

    replace: bpy.props.BoolProperty(
        name="Replace", default=False, options={"SKIP_SAVE"},
        description="Replace text already in the Transcript field (otherwise the operator refuses)")
    synchronous: bpy.props.BoolProperty(
        name="Synchronous", default=False, options={"SKIP_SAVE"},
        description="Block until done (always so in background mode, where timers never run)")

    _timer = None
    busy_flag = "transcribing"
    _pending: PendingTranscribe | None = None
    _starting: server_link.LocalStart | None = None
    _audio = None

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, job_running, no_audio, no_server)

    def execute(self, context):
        settings = context.scene.talkrig
        if settings.transcript.strip() and not self.replace:
            self.report({"ERROR"}, _TYPED)
            return _CANCELLED
        try:
            audio, _start = jobs.resolve_audio(settings, context.scene)
        except jobs.JobError as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        client = connect(context, self)
        if client is None:
            return _CANCELLED

        def progress(fraction: float, stage: str) -> None:
            print(f"talkrig: transcribe {fraction * 100:5.1f}% {stage}", flush=True)

        try:
            tr = client.transcribe(str(audio), progress=progress)
        except motion_client.ClientError as e:  # ServerError, ServerUnavailable, JobCancelled are ClientErrors
            self.report({"ERROR"}, failure_message(context, client.address, e))
            settings.status = "transcribe failed"
            return _CANCELLED
        level, msg = fill_transcript(settings, tr, self.replace)
        self.report({level}, msg)
        return _OK

    def invoke(self, context, event):
        settings = context.scene.talkrig
        if settings.transcript.strip() and not self.replace and not bpy.app.background:
            _ask_to_replace(context)
            return _CANCELLED
        if bpy.app.background or self.synchronous:
            return self.execute(context)
        try:
            self._audio, _start = jobs.resolve_audio(settings, context.scene)
        except jobs.JobError as e:
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        return self._start(context)

    def _submit(self, context) -> bool:
        pv = prefs_values(context)
        client = server_link.client(pv["address"], pv["timeout"], pv["key"])
        try:
            job = client.submit_transcribe(str(self._audio))
        except motion_client.ClientError as e:
            self.report({"ERROR"}, str(e))
            return False
        server_link.set_job(job)  # the panel's Cancel button finds it there
        self._pending = PendingTranscribe(job, self.replace)
        context.scene.talkrig.status = "transcribing"
        return True


classes = (TALKRIG_OT_transcribe,)
register, unregister = bpy.utils.register_classes_factory(classes)
