"""Atomic output files: every file TalkRig writes to a user's path goes through here.

A writer (our own code, Blender's exporters, ffmpeg) writes to a hidden temporary file in the SAME
folder as the destination, then it is flushed to disk and renamed over the destination in one step
(``os.replace``). A kill at any moment leaves either the old file or the new one, never half a file;
what it can leave is the temporary file, which :func:`sweep_stale` removes on a later run.

Temporary names: ``.<name>.talkrig-tmp-<pid>-<host>-<rand><suffix>``. The real suffix is kept at the end
because exporters and ffmpeg pick the format by suffix; ``<pid>`` and ``<host>`` (a short hash of the
host name) let a sweep tell a dead writer's leftovers from a file another process is still writing.
Nothing else ever matches that pattern, so a sweep never touches a user's file.

Scratch folders (rendered frames, job specs) live in the system temp folder as
``talkrig-scratch-<pid>-<host>-<rand>-<label>`` and are swept the same way.

numpy-free and stdlib-only: Blender's Python uses it too.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_MARK = ".talkrig-tmp-"
SCRATCH_PREFIX = "talkrig-scratch-"
# A leftover of another host (shared network folder) or of a pid we cannot judge is only removed once
# it is this old: no export or render takes a day.
FOREIGN_STALE_S = 24 * 3600.0

_TMP_RE = re.compile(r"^\.(?P<name>.+)\.talkrig-tmp-(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-(?P<rand>[0-9a-f]{8})")
_SCRATCH_RE = re.compile(r"^talkrig-scratch-(?P<pid>\d+)-(?P<host>[0-9a-f]{6})-(?P<rand>[0-9a-f]{8})")


class OutputError(OSError):
    """An output cannot be written; the message names the destination (never a temporary file)."""

    def __init__(self, message: str, err: int | None = None) -> None:
        super().__init__(message)
        self.errno = err


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def temp_name(path: str | Path) -> Path:
    """A fresh temporary path beside ``path`` with the same suffix (see the module docstring)."""
    p = Path(path)
    return p.with_name(f".{p.name}{TMP_MARK}{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}{p.suffix}")


def is_temp_name(name: str) -> bool:
    """True for names made by :func:`temp_name` (and only those)."""
    return _TMP_RE.match(name) is not None


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a zombie counts as dead). Unsure -> True."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if sys.platform == "win32":
        return _win_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return True
    try:  # Linux: a killed child that nobody reaped yet is a zombie, not a writer
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _win_pid_alive(pid: int) -> bool:
    # os.kill(pid, 0) on Windows sends CTRL_C_EVENT: ask the kernel instead.
    try:
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it exists
        try:
            code = ctypes.c_ulong()
            if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
                return True
            return code.value == 259  # STILL_ACTIVE
        finally:
            kernel32.CloseHandle(handle)
    except Exception:  # noqa: BLE001 - unsure: keep the file
        return True


def _is_stale(pid: int, host: str, mtime: float, now: float) -> bool:
    if host == _host_tag() and pid != os.getpid():
        return not pid_alive(pid)
    return now - mtime > FOREIGN_STALE_S


def _remove(p: Path) -> bool:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def sweep_stale(folder: str | Path) -> list[Path]:
    """Remove temporary files/folders left in ``folder`` by writers that died (killed mid-write).

    Only names made by :func:`temp_name` are considered; one is removed when its writer's pid is no
    longer running on this host, or (another host's, or pid unknown) when it is older than a day.
    Returns what was removed. Never raises for a missing or unreadable folder."""
    return _sweep(Path(folder), _TMP_RE)


def sweep_scratch() -> list[Path]:
    """Remove scratch folders (:func:`scratch_dir`) of dead TalkRig processes from the system temp folder."""
    return _sweep(Path(tempfile.gettempdir()), _SCRATCH_RE)


def _sweep(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    """Remove the entries of ``folder`` named by ``pattern`` whose writer is gone (see sweep_stale)."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = pattern.match(e.name)
        if m is None:
            continue
        try:
            mtime = e.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if _is_stale(int(m["pid"]), m["host"], mtime, now) and _remove(Path(e.path)):
            removed.append(Path(e.path))
    return removed


@contextmanager
def scratch_dir(label: str = "") -> Iterator[Path]:
    """A private folder in the system temp folder, removed on exit; named so that a later run's
    :func:`sweep_scratch` removes it if this process is killed."""
    sweep_scratch()
    safe = re.sub(r"[^A-Za-z0-9_]", "_", label)[:24]
    d = Path(tempfile.gettempdir()) / f"{SCRATCH_PREFIX}{os.getpid()}-{_host_tag()}-{secrets.token_hex(4)}"
    if safe:
        d = d.with_name(f"{d.name}-{safe}")
    d.mkdir(mode=0o700)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def nearest_existing_folder(path: str | Path) -> Path:
    """The folder ``path`` will be written into, or its closest existing ancestor (to be created)."""
    d = Path(path).absolute().parent
    while not d.exists() and d != d.parent:
        d = d.parent
    return d


def check_folder_writable(path: str | Path) -> None:
    """Refuse early (before minutes of work) when the output ``path`` cannot be written: its folder (or
    the closest existing ancestor, for folders still to be created) is not a folder or not writable.
    Probes by creating and removing a temporary file, so it is right for root, ACLs and read-only
    mounts alike. Raises :class:`OutputError` naming the folder."""
    d = nearest_existing_folder(path)
    if not d.is_dir():
        raise OutputError(f"cannot write {path}: {d} is a file, not a folder")
    probe = temp_name(d / "write-probe")
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise OutputError(f"cannot write to the output folder {d}: {_why(exc)}; choose another output "
                          "folder or fix its permissions", exc.errno) from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError:
        pass


def prepare_output(path: str | Path) -> None:
    """At the start of a run, for each output: sweep a killed run's leftovers from its folder and refuse
    early, naming the folder, if it cannot be written (:func:`check_folder_writable`)."""
    sweep_stale(nearest_existing_folder(path))
    check_folder_writable(path)


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    return exc.strerror or str(exc)


def _about(exc: OSError, tmp: Path) -> bool:
    """Whether ``exc`` is about our temporary path (so the user should hear the destination's name)."""
    if isinstance(exc, (OutputError, FileExistsError)):
        return False
    names = [str(n) for n in (exc.filename, exc.filename2) if n is not None]
    return any(n == str(tmp) or n.startswith(str(tmp) + os.sep) for n in names)


def fsync_path(p: Path) -> None:
    """Flush a finished file (or a folder's entries, on POSIX) to disk; best effort for folders."""
    if p.is_dir():
        if os.name == "nt":
            return
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)
        return
    with open(p, "rb+") as f:
        os.fsync(f.fileno())


def _real(path: str | Path) -> Path:
    """A destination that is a symlink is written through (the link stays a link), as open() would."""
    p = Path(path)
    return p.resolve() if p.is_symlink() else p


def _commit(tmp: Path, dest: Path, overwrite: bool) -> None:
    if not overwrite and dest.exists():
        raise FileExistsError(f"{dest} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    os.replace(tmp, dest)


@contextmanager
def atomic_output(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix) for a writer to fill; on success it is
    fsynced and renamed over ``path``; on any failure (or if the writer wrote nothing) it is removed and
    ``path`` is untouched.

    ``overwrite=False`` refuses to replace a file that appeared meanwhile (FileExistsError). Errors
    creating or renaming the temporary file name ``path``, not the temporary file."""
    dest = _real(path)
    sweep_stale(dest.parent)
    tmp = temp_name(dest)
    try:
        yield tmp
        if not tmp.is_file():
            raise OutputError(f"{dest} was not written (the writer produced no file)")
        fsync_path(tmp)
        _commit(tmp, dest, overwrite)
        fsync_path(dest.parent)
    except OSError as exc:
        _remove(tmp)
        if not _about(exc, tmp):
            raise
        raise OutputError(f"cannot write {dest}: {_why(exc)}", exc.errno) from exc
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def atomic_output_group(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """For writers that make a main file plus companions named after it (a ``.gltf`` and its ``.bin``,
    textures): yield ``<hidden temp folder>/<name>``; the writer writes there (so the companions get
    their final names and the main file references them correctly). On success every companion is
    renamed into place first and the main file last, so the main file never points at a missing buffer;
    on failure the temp folder goes and nothing in the destination changes."""
    dest = _real(path)
    sweep_stale(dest.parent)
    stage = temp_name(dest).with_suffix("")
    try:
        stage.mkdir()
        main = stage / dest.name
        yield main
        if not main.is_file():
            raise OutputError(f"{dest} was not written (the writer produced no file)")
        if not overwrite and dest.exists():
            raise FileExistsError(f"{dest} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
        companions = [f for f in stage.iterdir() if f != main]
        for f in (*companions, main):
            if f.is_file():
                fsync_path(f)
        for f in companions:
            target = dest.parent / f.name
            if target.is_dir():
                raise OutputError(f"cannot write {target}: a folder has that name")
            os.replace(f, target)
        os.replace(main, dest)
        fsync_path(dest.parent)
    except OSError as exc:
        _remove(stage)
        if not _about(exc, stage):
            raise
        raise OutputError(f"cannot write {dest}: {_why(exc)}", exc.errno) from exc
    except BaseException:
        _remove(stage)
        raise
    _remove(stage)


def write_bytes_atomic(path: str | Path, data: bytes, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    dest = Path(path)
    with atomic_output(dest, overwrite=overwrite) as tmp:
        # exclusive create with the default mode: the result gets the user's umask like any open()
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
    return dest
