"""Small file helpers shared by the writers: refuse to overwrite unless asked, write atomically."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def check_writable(path: str | Path, overwrite: bool) -> Path:
    """``path`` as a Path once it is safe to write: refuses an existing file unless ``overwrite``."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not p.parent.exists():
        raise FileNotFoundError(f"folder {p.parent} does not exist; create it first")
    return p


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file next to ``path`` then rename, so a crash never leaves half a file."""
    # A random name opened exclusively (not mkstemp, which makes 0600 files): the result gets the
    # permissions any plain open() would, i.e. the user's umask.
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
