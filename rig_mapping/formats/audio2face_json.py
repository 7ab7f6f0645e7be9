"""NVIDIA Audio2Face blendshape-weight JSON read/write.

Layout: ``exportFps`` (number), ``trackPath`` (string), ``numPoses`` (int), ``numFrames`` (int),
``facsNames`` (``numPoses`` strings), ``weightMat`` (``numFrames`` rows of ``numPoses`` numbers).
Names are matched to ARKit channels in any common spelling (``jawOpen``, ``JawOpen``, ``jaw_open``,
``eyeBlink_L``...). Names that are not ARKit shapes are skipped with a warning and listed in
``meta["unmapped_names"]``; ARKit channels the file lacks stay at 0.

On write, TalkRig adds a ``talkrig`` object (meta and head pose) that Audio2Face readers ignore, so a
TalkRig round trip is lossless.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..arkit import ARKIT_INDEX, ARKIT_NAMES, HEAD_CHANNELS, NUM_CHANNELS
from ..motion import FaceMotion, MotionError
from ..names import arkit_channel_for
from ._io import check_writable, write_atomic
from .errors import FormatError


def read_audio2face_json(path: str | Path) -> FaceMotion:
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"not valid JSON ({e})", path=p) from None
    return parse_audio2face(doc, source=str(p))


def parse_audio2face(doc: Any, source: str = "<json>") -> FaceMotion:
    if not isinstance(doc, dict):
        raise FormatError("top level must be a JSON object", path=source)

    def need(key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in doc:
            raise FormatError("missing; an Audio2Face export has exportFps, numPoses, numFrames, facsNames, "
                              "weightMat", path=source, field=key)
        v = doc[key]
        if not isinstance(v, kind) or isinstance(v, bool):
            raise FormatError(f"has type {type(v).__name__}", path=source, field=key)
        return v

    fps = float(need("exportFps", (int, float)))
    if not (fps > 0 and math.isfinite(fps)):
        raise FormatError(f"must be a positive frame rate, got {fps}", path=source, field="exportFps")
    num_poses = need("numPoses", int)
    num_frames = need("numFrames", int)
    names = need("facsNames", list)
    mat = need("weightMat", list)
    if len(names) != num_poses:
        raise FormatError(f"has {len(names)} names but numPoses is {num_poses}", path=source, field="facsNames")
    if len(mat) != num_frames:
        raise FormatError(f"has {len(mat)} rows but numFrames is {num_frames}", path=source, field="weightMat")

    cols: list[int] = []
    src: list[int] = []
    unmapped: list[str] = []
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not isinstance(name, str):
            raise FormatError(f"must be a string, got {name!r}", path=source, field=f"facsNames[{i}]")
        ch = arkit_channel_for(name)
        if ch is None:
            unmapped.append(name)
            continue
        if ch in seen:
            raise FormatError(f"{name!r} names the same ARKit channel {ch!r} as facsNames[{seen[ch]}]",
                              path=source, field=f"facsNames[{i}]")
        seen[ch] = i
        cols.append(ARKIT_INDEX[ch])
        src.append(i)
    if not cols and num_poses:
        raise FormatError(f"none of the {num_poses} names is an ARKit shape (first: {names[0]!r})",
                          path=source, field="facsNames")
    if unmapped:
        warnings.warn(f"{source}: skipped {len(unmapped)} non-ARKit shapes: {unmapped[:5]}", stacklevel=3)

    for r, row in enumerate(mat):
        if not isinstance(row, list) or len(row) != num_poses:
            got = len(row) if isinstance(row, list) else type(row).__name__
            raise FormatError(f"row has {got} values, expected numPoses={num_poses}", path=source,
                              field=f"weightMat[{r}]")
    try:
        data = np.array(mat, dtype=np.float64).reshape(num_frames, num_poses)
    except (TypeError, ValueError):
        r = next(i for i, row in enumerate(mat) if not all(_is_number(v) for v in row))
        raise FormatError("holds a value that is not a number", path=source, field=f"weightMat[{r}]") from None
    bad = np.argwhere(~np.isfinite(data))
    if bad.size:
        r, c = bad[0]
        raise FormatError(f"value for {names[c]!r} is not finite", path=source, field=f"weightMat[{r}][{c}]")

    weights = np.zeros((num_frames, NUM_CHANNELS), np.float32)
    weights[:, cols] = data[:, src]
    head, meta = _talkrig_extra(doc.get("talkrig"), num_frames, source)
    if "talkrig" not in doc:  # a TalkRig-written file keeps its own meta unchanged
        meta["source"] = "audio2face_json"
        if doc.get("trackPath"):
            meta["track_path"] = str(doc["trackPath"])
    if unmapped:
        meta["unmapped_names"] = unmapped
    try:
        return FaceMotion.from_arrays(weights, head, fps=fps, meta=meta, clamp=True)
    except MotionError as e:
        raise FormatError(str(e), path=source) from None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _talkrig_extra(extra: Any, n: int, source: str) -> tuple[np.ndarray | None, dict]:
    if extra is None:
        return None, {}
    if not isinstance(extra, dict):
        raise FormatError("must be an object", path=source, field="talkrig")
    meta = extra.get("meta", {})
    if not isinstance(meta, dict):
        raise FormatError("must be an object", path=source, field="talkrig.meta")
    head = extra.get("head")
    if head is None:
        return None, dict(meta)
    try:
        h = np.array(head, dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError("must be numFrames rows of 6 numbers", path=source, field="talkrig.head") from None
    if h.shape != (n, len(HEAD_CHANNELS)) or not np.isfinite(h).all():
        raise FormatError(f"must be {n} rows of 6 finite numbers, got shape {list(h.shape)}", path=source,
                          field="talkrig.head")
    return h, dict(meta)


def to_audio2face(motion: FaceMotion, track_path: str = "", include_talkrig: bool = True) -> dict:
    doc: dict[str, Any] = {
        "exportFps": motion.fps,
        "trackPath": track_path or str(motion.meta.get("audio_path", "")),
        "numPoses": NUM_CHANNELS,
        "numFrames": motion.n_frames,
        "facsNames": list(ARKIT_NAMES),
        # float32 -> float keeps every bit; json writes the shortest repr that round-trips.
        "weightMat": motion.weights.astype(np.float64).tolist(),
    }
    if include_talkrig:
        doc["talkrig"] = {"meta": motion.meta, "head": motion.head.astype(np.float64).tolist(),
                          "head_channels": list(HEAD_CHANNELS)}
    return doc


def write_audio2face_json(motion: FaceMotion, path: str | Path, overwrite: bool = False,
                          track_path: str = "", include_talkrig: bool = True) -> Path:
    p = check_writable(path, overwrite)
    try:
        text = json.dumps(to_audio2face(motion, track_path, include_talkrig), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FormatError(f"meta is not JSON-serialisable ({e})", path=p, field="talkrig.meta") from None
    write_atomic(p, text.encode("utf-8"))
    return p
