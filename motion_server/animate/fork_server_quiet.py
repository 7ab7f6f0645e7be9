"""Imported first, and only, by the ``--jobs N`` fork server: it ignores Ctrl-C while it imports torch
(before multiprocessing's own handler is in place), so an early Ctrl-C prints no traceback from it. The
command itself stops the workers (``LocalBackend.close``)."""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
