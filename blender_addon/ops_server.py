"""The motion server from the panel: Connect (check it answers), Start and Stop a local one."""

from __future__ import annotations

import bpy

from . import server_link
from .job_modal import prefs_values, tag_redraw
from .poll import allowed, local_server_running, no_local_server, not_local, offline

_OK = {"FINISHED"}
_CANCELLED = {"CANCELLED"}


class TALKRIG_OT_server_check(bpy.types.Operator):
    """Check whether the motion server answers"""

    bl_idname = "talkrig.server_check"
    bl_label = "Connect"

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, offline)

    def execute(self, context):
        pv = prefs_values(context)
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

    @classmethod
    def poll(cls, context):
        return allowed(cls, context, local_server_running, not_local)

    def invoke(self, context, event):
        """From the UI: launch, then wait for the engine to load in a modal timer (the UI stays live)."""
        if bpy.app.background:
            return self.execute(context)
        pv = prefs_values(context)
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
        tag_redraw(context)

    def cancel(self, context):
        self._end(context)

    def execute(self, context):
        pv = prefs_values(context)
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
        return allowed(cls, context, no_local_server)

    def execute(self, context):
        server_link.stop_local()
        context.scene.talkrig.server_ok = False
        return _OK


classes = (TALKRIG_OT_server_check, TALKRIG_OT_server_start, TALKRIG_OT_server_stop)
register, unregister = bpy.utils.register_classes_factory(classes)
