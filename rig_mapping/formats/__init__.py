"""Motion file formats, chosen by file extension through one table.

=========  ==========================================  =====================================
suffix     format                                      module
=========  ==========================================  =====================================
``.npz``   TalkRig native, lossless (meta, fps, head)  :mod:`rig_mapping.formats.npz`
``.csv``   Live Link Face CSV                          :mod:`rig_mapping.formats.livelink_csv`
``.json``  NVIDIA Audio2Face blendshape export         :mod:`rig_mapping.formats.audio2face_json`
=========  ==========================================  =====================================

Every reader raises :class:`FormatError` (a ``ValueError``) naming the line or field at fault.
Writers refuse to replace an existing file unless ``overwrite=True``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..motion import FaceMotion
from .audio2face_json import read_audio2face_json, write_audio2face_json
from .errors import FormatError
from .livelink_csv import read_livelink_csv, write_livelink_csv
from .npz import load_npz, save_npz


@dataclass(frozen=True)
class MotionFormat:
    name: str
    read: Callable[..., FaceMotion]
    write: Callable[..., Path]


FORMATS: dict[str, MotionFormat] = {
    ".npz": MotionFormat("TalkRig npz", load_npz, save_npz),
    ".csv": MotionFormat("Live Link Face CSV", read_livelink_csv, write_livelink_csv),
    ".json": MotionFormat("Audio2Face JSON", read_audio2face_json, write_audio2face_json),
}


def format_for(path: str | Path) -> MotionFormat:
    suffix = Path(path).suffix.lower()
    try:
        return FORMATS[suffix]
    except KeyError:
        raise FormatError(f"unknown motion file type {suffix!r}; supported: {', '.join(FORMATS)}",
                          path=path) from None


def load_motion(path: str | Path, **options: Any) -> FaceMotion:
    """Read a motion file; ``options`` go to the format's reader (e.g. ``fps=``, ``mirror=`` for CSV)."""
    fmt = format_for(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return fmt.read(path, **options)


def save_motion(motion: FaceMotion, path: str | Path, overwrite: bool = False, **options: Any) -> Path:
    """Write ``motion`` in the format its extension names. Refuses to replace a file unless asked."""
    return format_for(path).write(motion, path, overwrite=overwrite, **options)


def names_motion_file(style: str) -> bool:
    """Whether a ``--style`` value is a path rather than a preset ('happy:3', 'predicted'): a motion
    suffix, a path separator, or an existing file (a bare folder name could be a preset)."""
    p = Path(style)
    return p.suffix.lower() in FORMATS or "/" in style or "\\" in style or p.is_file()


def style_reference(style: str | None) -> FaceMotion | None:
    """The reference clip a ``style`` value names (read here, so it also works through a server that
    cannot see this machine's files), or None when it is a preset name. ValueError says what is wrong
    with a path that is no usable motion file."""
    if not style or not names_motion_file(style):
        return None
    p = Path(style)
    if p.is_dir():
        raise ValueError(f"{p} is a folder; give a motion file ({', '.join(FORMATS)}) or a preset name")
    if not p.is_file():
        raise ValueError(f"style reference file not found: {p}")
    if p.suffix.lower() not in FORMATS:
        raise ValueError(f"{p}: a style reference is a motion file ({', '.join(FORMATS)})")
    return load_motion(p)


__all__ = [
    "FORMATS", "FormatError", "MotionFormat", "format_for", "load_motion", "names_motion_file", "save_motion",
    "style_reference",
    "load_npz", "save_npz", "read_livelink_csv", "write_livelink_csv",
    "read_audio2face_json", "write_audio2face_json",
]
