"""Small file helpers shared by the writers: refuse to overwrite unless asked, write atomically."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_bytes_atomic


def check_writable(path: str | Path, overwrite: bool) -> Path:
    """``path`` as a Path once it is safe to write: refuses an existing file unless ``overwrite``."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if not p.parent.exists():
        raise FileNotFoundError(f"folder {p.parent} does not exist; create it first")
    return p


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file next to ``path`` then rename (:mod:`rig_mapping.atomic`), so a crash
    never leaves half a file and an error names ``path``, not the temporary file."""
    write_bytes_atomic(path, data)
