"""What earlier runs wrote, so re-running a batch skips the lines whose inputs and settings are unchanged.

Each output folder holds ``.talkrig-ledger.jsonl``: one JSON line per finished output, naming the file
and the key of everything that made it (audio bytes, transcript, style, options, model, character,
render settings). Appending a line is cheap at 50,000 lines, and a killed run loses at most the line it
was writing (a torn last line is ignored). The last line for a file wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LEDGER_NAME = ".talkrig-ledger.jsonl"
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes (cached per path, size and mtime: a character used by every line is read
    once)."""
    p = Path(path)
    st = p.stat()
    k = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if k not in _DIGESTS:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[k] = h.hexdigest()
    return _DIGESTS[k]


def folder_digest(path: str | Path) -> str:
    """sha256 over a folder's files (names and bytes), e.g. a checkpoint folder."""
    h = hashlib.sha256()
    root = Path(path)
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode())
        h.update(file_digest(f).encode())
    return h.hexdigest()


def settings_key(parts: dict[str, Any]) -> str:
    """A stable key for a JSON-able description of how an output is made."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class Ledger:
    """The ledgers of every output folder a batch writes into (loaded on first use)."""

    def __init__(self) -> None:
        self._folders: dict[Path, dict[str, dict[str, Any]]] = {}

    def _entries(self, folder: Path) -> dict[str, dict[str, Any]]:
        folder = folder.resolve()
        if folder not in self._folders:
            entries: dict[str, dict[str, Any]] = {}
            try:
                lines = (folder / LEDGER_NAME).read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                lines = []
            for ln in lines:
                try:
                    e = json.loads(ln)
                except json.JSONDecodeError:
                    continue  # a line torn by a killed run
                if isinstance(e, dict) and isinstance(e.get("file"), str):
                    entries[e["file"]] = e
            self._folders[folder] = entries
        return self._folders[folder]

    def up_to_date(self, outputs: Iterable[Path], key: str) -> bool:
        """Every output exists, unchanged since it was recorded with this key."""
        outs = list(outputs)
        if not outs:
            return False
        for p in outs:
            e = self._entries(p.parent).get(p.name)
            if e is None or e.get("key") != key or not p.is_file():
                return False
            st = p.stat()
            # the file itself must still be the one recorded (a hand edit is the user's and is kept,
            # but it is no longer "up to date"; --overwrite replaces it)
            if e.get("size") != st.st_size or e.get("mtime_ns") != st.st_mtime_ns:
                return False
        return True

    def record(self, outputs: Iterable[Path], key: str, info: dict[str, Any] | None = None) -> None:
        """Append one line per finished output (the file is complete: written atomically before)."""
        for p in outputs:
            if not p.is_file():
                continue
            st = p.stat()
            e = {"file": p.name, "key": key, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S"), **(info or {})}
            ledger = p.parent / LEDGER_NAME
            with open(ledger, "a", encoding="utf-8") as f:
                f.write(json.dumps(e, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())
            self._entries(p.parent)[p.name] = e
