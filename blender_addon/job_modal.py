"""What every server-job operator shares (Generate, Transcribe): the blocking connect of their synchronous
path, and the modal half: wait for a local server to start, submit, poll the job on each timer tick, Esc
or the panel's Cancel, and tidy up. Timers and modal operators never run in ``blender -b``; those
operators keep their own synchronous path. Whether the server may be reached at all (online access) is
their ``poll``'s business (poll.py)."""

from __future__ import annotations

from typing import Any

import bpy

from motion_server import client as motion_client

from . import server_link
from .preferences import get_prefs

_CANCELLED = {"CANCELLED"}


def tag_redraw(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def prefs_values(context: bpy.types.Context) -> dict[str, Any]:
    p = get_prefs(context)
    if p is None:  # used as a plain module (tests): defaults
        return {"address": server_link.DEFAULT_ADDRESS, "key": "", "timeout": 30.0, "auto_start": False,
                "python": "", "engine": "", "export_dir": ""}
    return {"address": p.server_address, "key": p.server_public_key, "timeout": p.timeout_s,
            "auto_start": p.auto_start, "python": p.python_path, "engine": p.engine,
            "export_dir": bpy.path.abspath(p.export_dir) if p.export_dir else ""}


def connect(context: bpy.types.Context, op: bpy.types.Operator) -> Any | None:
    """A client whose server answers (starting a local one if the preferences say so, blocking until it
    answers), else None after reporting why on ``op``."""
    pv = prefs_values(context)
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


def failure_message(context: bpy.types.Context, address: str, err: Exception) -> str:
    """What a failed job request says: for a server that stopped answering, the fix as well."""
    if isinstance(err, motion_client.ServerUnavailable):
        return server_link.unreachable_message(address, prefs_values(context)["key"], detail=str(err))
    return str(err)


class PendingJob:
    """A submitted server job that a modal operator drives from its timer (a test or script can loop on it
    the same way). ``status_prefix`` goes before the final state in the panel's status line."""

    status_prefix = ""

    def __init__(self, job: Any) -> None:
        self.job = job

    def tick(self, settings: Any) -> bool:
        """Poll without blocking, mirror progress into the panel settings; True once the job has ended."""
        st = self.job.poll()
        settings.progress, settings.status = st.fraction, st.stage
        return self.job.done

    def failed(self, context: bpy.types.Context, report: Any) -> set[str] | None:
        """When the job ended without a result: report why (cancelled, server gone, refused), return
        CANCELLED. None when it is done."""
        st = self.job.status
        if st.state == "done":
            return None
        err = self.job.error
        msg = failure_message(context, prefs_values(context)["address"], err) if err else st.state
        report({"WARNING"} if st.state == "cancelled" else {"ERROR"}, msg)
        context.scene.talkrig.status = f"{self.status_prefix}{st.state}"
        return _CANCELLED


class ServerJobModal:
    """Mixin for a ``bpy.types.Operator`` (listed before it). The operator sets ``busy_flag`` (the scene
    setting that marks its job in flight), ``_submit(context) -> bool`` and a ``_pending`` object with
    ``job``, ``tick(settings) -> done`` and ``finish(context, report) -> set``."""

    busy_flag = "running"
    _timer: Any = None
    _pending: Any = None
    _starting: Any = None

    def _submit(self, context: bpy.types.Context) -> bool:
        raise NotImplementedError

    def _start(self, context: bpy.types.Context) -> set[str]:
        """Connect to the server (or start the local one and wait for it in the modal), submit, go modal."""
        settings = context.scene.talkrig
        self._pending, self._starting = None, None
        pv = prefs_values(context)
        try:
            server_link.check(pv["address"], pv["key"])
        except server_link.ServerLinkError as e:
            settings.server_ok = False
            if not pv["auto_start"]:
                self.report({"ERROR"}, str(e))
                return _CANCELLED
            try:  # the engine may take a while to load: wait for it in the modal, not here
                self._starting = server_link.LocalStart(pv["address"], pv["python"], pv["engine"])
            except server_link.ServerLinkError as e2:
                self.report({"ERROR"}, str(e2))
                return _CANCELLED
            settings.status = "starting the local server"
        else:
            settings.server_ok = True
            if not self._submit(context):
                return _CANCELLED
        setattr(settings, self.busy_flag, True)
        settings.progress = 0.0
        wm = context.window_manager
        wm.progress_begin(0, 100)
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _tick_start(self, context: bpy.types.Context) -> set[str]:
        """While the local server loads: poll it (<= 20 ms a tick), then submit."""
        settings = context.scene.talkrig
        if not getattr(settings, self.busy_flag):  # the panel's Cancel button
            self._finish(context)
            self.report({"WARNING"}, "Cancelled; the local server goes on starting (Stop local server ends it)")
            return _CANCELLED
        try:
            ready = self._starting.tick()
        except server_link.ServerLinkError as e:
            self._finish(context)
            settings.status = "the local server did not start"
            self.report({"ERROR"}, str(e))
            return _CANCELLED
        if not ready:
            tag_redraw(context)
            return {"PASS_THROUGH"}
        self._starting = None
        settings.server_ok = True
        if not self._submit(context):
            self._finish(context)
            return _CANCELLED
        return {"PASS_THROUGH"}

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        if event.type == "ESC":
            if self._pending is not None:
                self._pending.job.cancel()
            else:
                setattr(context.scene.talkrig, self.busy_flag, False)
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._starting is not None:
            return self._tick_start(context)
        settings = context.scene.talkrig
        done = self._pending.tick(settings)
        context.window_manager.progress_update(int(settings.progress * 100))
        tag_redraw(context)
        if not done:
            return {"PASS_THROUGH"}
        self._finish(context)
        return self._pending.finish(context, self.report)

    def _finish(self, context: bpy.types.Context) -> None:
        wm = context.window_manager
        if self._timer is not None:
            wm.event_timer_remove(self._timer)
            self._timer = None
        wm.progress_end()
        setattr(context.scene.talkrig, self.busy_flag, False)
        server_link.set_job(None)
        tag_redraw(context)

    def cancel(self, context: bpy.types.Context) -> None:
        if self._pending is not None and not self._pending.job.done:
            self._pending.job.cancel()
        self._finish(context)
