"""The ``talkrig`` command. Subcommands live in ``cmd_*.py`` modules next to this file; each defines
``register(subparsers)`` which adds its parser and sets ``func``. New commands need no edit here."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

from motion_server import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="talkrig",
        description="TalkRig: speech audio in, ARKit facial animation out.",
    )
    parser.add_argument("--version", action="version", version=f"talkrig {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if mod.name.startswith("cmd_"):
            importlib.import_module(f"{__name__}.{mod.name}").register(sub)
    return parser


def _format_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    line: str | None = None) -> str:
    # TalkRig's own notes (a clamped value, a gap in a Live Link take) read as one line, not as a
    # source location and a line of code
    if issubclass(category, UserWarning) and not issubclass(category, DeprecationWarning):
        return f"talkrig: note: {message}\n"
    return _default_format(message, category, filename, lineno, line)


_default_format = warnings.formatwarning


def main(argv: list[str] | None = None) -> int:
    previous = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        return _main(argv)
    finally:  # callers that run the CLI in-process get their own formatting back
        warnings.formatwarning = previous


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        print("talkrig: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
