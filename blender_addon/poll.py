"""Why an operator cannot run now. Each check returns the reason, naming the problem and the fix, or None;
an operator's ``poll`` passes its checks to ``allowed``, which shows the first reason on the greyed-out
button (and in the error a script gets). The panel draws buttons plainly and relies on these polls, so
each condition is written once, here."""

from __future__ import annotations

from collections.abc import Callable

import bpy

from . import server_link
from .core.anim import has_animation
from .core.target import Target, TargetError, find_target
from .job_modal import prefs_values

Check = Callable[[bpy.types.Context], "str | None"]


def allowed(cls: type, context: bpy.types.Context, *checks: Check) -> bool:
    """True when every check passes; else sets the first failing check's reason as the poll message."""
    for check in checks:
        why = check(context)
        if why:
            cls.poll_message_set(why)
            return False
    return True


def _target_or_reason(context: bpy.types.Context) -> Target | str:
    try:
        return find_target(context.active_object)
    except TargetError as e:
        why = str(e)
        return why[:1].upper() + why[1:]


def no_character(context: bpy.types.Context) -> str | None:
    """Nothing selected, or the selection has no ARKit-like shape keys and no head/neck/jaw bones."""
    t = _target_or_reason(context)
    return t if isinstance(t, str) else None


def nothing_to_export(context: bpy.types.Context) -> str | None:
    """No character, or a character without any animation (no assigned Action, no NLA strip)."""
    t = _target_or_reason(context)
    if isinstance(t, str):
        return t
    if not has_animation(t.objects):
        return f"{t.name} has no animation to export: Generate, Apply or import a take first"
    return None


def job_running(context: bpy.types.Context) -> str | None:
    s = context.scene.talkrig
    if s.running:
        return "A generate job is running (wait for it, or Cancel it)"
    if s.transcribing:
        return "A transcribe job is running (wait for it, or Cancel it)"
    return None


def no_job(context: bpy.types.Context) -> str | None:
    """Nothing to cancel. A job flag left set without a job (e.g. a crashed modal) still lets Cancel run,
    which clears it."""
    s = context.scene.talkrig
    job = server_link.current_job()
    if (job is None or job.done) and not s.running and not s.transcribing:
        return "No generate or transcribe job is running"
    return None


def no_audio(context: bpy.types.Context) -> str | None:
    s = context.scene.talkrig
    if s.audio_source == "STRIP" and not s.strip_name:
        return "No sound strip chosen: pick one under Audio > Sound strip"
    if s.audio_source == "FILE" and not s.audio_path:
        return "No audio chosen: set the Audio file (wav, flac, mp3, ogg)"
    return None


def offline(context: bpy.types.Context) -> str | None:
    """Blender's online access is off and the server is on another computer."""
    address = prefs_values(context)["address"]
    if not server_link.is_loopback(address) and not bpy.app.online_access:
        return (f"Online access is off and the server {address} is not on this computer: allow it in "
                f"Preferences > System > Network, or use a local server ({server_link.DEFAULT_ADDRESS})")
    return None


def no_server(context: bpy.types.Context) -> str | None:
    """No server may be reached, or none has answered and none would be started on demand."""
    why = offline(context)
    if why:
        return why
    if not context.scene.talkrig.server_ok and not prefs_values(context)["auto_start"]:
        return "No motion server connected: press Connect or Start local server (or run `talkrig serve`)"
    return None


def local_server_running(context: bpy.types.Context) -> str | None:
    if server_link.local_server_running():
        return "The local motion server is already running (Stop local server ends it)"
    return None


def not_local(context: bpy.types.Context) -> str | None:
    return server_link.local_address_problem(prefs_values(context)["address"])


def no_local_server(context: bpy.types.Context) -> str | None:
    if not server_link.local_server_running():
        return "No local server was started from this Blender session"
    return None
