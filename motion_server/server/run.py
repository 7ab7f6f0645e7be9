"""Run a server in the foreground until SIGINT/SIGTERM or a shutdown message."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

from .config import ServerConfig, check_binds
from .core import MotionServer

log = logging.getLogger("talkrig.server")


def run_server(engine: Any, config: ServerConfig, recogniser: Any = None) -> int:
    """Bind, log where and what, serve. First signal: cancel jobs and stop; second: exit at once."""
    check_binds(config.binds, curve=config.curve_secret is not None)  # before any slow work
    if config.curve_secret is not None:
        from .keys import secret_file_warning

        warning = secret_file_warning(config.curve_secret)
        if warning:
            log.warning("%s", warning)
    from ..audio.io import sweep_stale_temp

    swept = sweep_stale_temp()  # decode folders of killed servers (systems without memfd only)
    if swept:
        log.info("removed %d stale audio temp folder(s)", swept)
    server = MotionServer(engine, config, recogniser)
    endpoints = server.bind()
    info = server.info
    log.info("engine %s (model %s) on device %s", server.engine_name, info.get("model", "-"), info.get("device", "cpu"))
    for ep in endpoints:
        log.info("listening on %s%s", ep, " (CurveZMQ encrypted)" if config.curve_secret else "")
    log.info("limits: %.0f MB per message, %g s of audio, %d queued jobs (%.0f MB), %d jobs and %.0f MB per "
             "client%s; stop with Ctrl+C", config.max_message_mb, config.max_audio_seconds, config.max_queue,
             config.max_queued_mb, config.max_client_jobs, config.max_client_mb,
             "; jobs shared between clients" if config.shared_jobs else "")

    signals_seen = [0]

    def on_signal(signum: int, _frame: Any) -> None:
        signals_seen[0] += 1
        if signals_seen[0] > 1:
            log.warning("second signal: exiting now")
            raise SystemExit(130)
        log.info("received %s", signal.Signals(signum).name)
        server.stop_soon("cancel", reason="server interrupted")

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    server.serve_forever()
    return 0
