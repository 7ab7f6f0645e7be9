"""Lossless TalkRig motion files (``.npz``).

Arrays: ``weights`` float32 [T, 52], ``head`` float32 [T, 6], ``fps`` float64 scalar, ``meta_json``
(the meta dict as a JSON string), ``format_version`` int, ``channel_names`` / ``head_channels``
(strings, so a reader can check or reorder columns by name). Loading never unpickles
(``allow_pickle=False``): every array is numeric or fixed-width unicode.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..arkit import ARKIT_INDEX, ARKIT_NAMES, HEAD_CHANNELS
from ..motion import FORMAT_VERSION, FaceMotion, MotionError
from ._io import check_writable, write_atomic
from .errors import FormatError

REQUIRED = ("weights", "head", "fps", "meta_json", "format_version")


def save_npz(motion: FaceMotion, path: str | Path, overwrite: bool = False) -> Path:
    p = check_writable(path, overwrite)
    try:
        meta_json = json.dumps(motion.meta, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise FormatError(f"meta is not JSON-serialisable ({e}); keep meta to str/int/float/list/dict",
                          path=p, field="meta") from None
    buf = io.BytesIO()
    np.savez_compressed(
        buf,
        weights=motion.weights,
        head=motion.head,
        fps=np.float64(motion.fps),
        meta_json=np.array(meta_json),
        format_version=np.int64(FORMAT_VERSION),
        channel_names=np.array(ARKIT_NAMES),
        head_channels=np.array(HEAD_CHANNELS),
    )
    write_atomic(p, buf.getvalue())
    return p


def load_npz(path: str | Path) -> FaceMotion:
    p = Path(path)
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, zipfile.BadZipFile, ValueError) as e:
        raise FormatError(f"not a readable .npz file ({e})", path=p) from None
    with z:
        missing = [k for k in REQUIRED if k not in z.files]
        if missing:
            raise FormatError(f"missing arrays {missing}; is this a TalkRig motion file?", path=p, field=missing[0])
        try:
            arrays = {k: z[k] for k in z.files}
        except ValueError as e:  # object arrays would need pickle: refused
            raise FormatError(f"contains an array that needs pickle to load ({e}); refused for safety",
                              path=p) from None
    version = int(arrays["format_version"])
    if version > FORMAT_VERSION:
        raise FormatError(f"format_version {version} is newer than this TalkRig reads ({FORMAT_VERSION}); "
                          "update TalkRig", path=p, field="format_version")
    weights = arrays["weights"]
    if "channel_names" in arrays:
        weights = _reorder(weights, [str(n) for n in arrays["channel_names"]], p)
    try:
        meta = json.loads(str(arrays["meta_json"]))
    except json.JSONDecodeError as e:
        raise FormatError(f"meta_json is not valid JSON ({e})", path=p, field="meta_json") from None
    if not isinstance(meta, dict):
        raise FormatError("meta_json must hold a JSON object", path=p, field="meta_json")
    try:
        return FaceMotion(fps=float(arrays["fps"]), weights=weights, head=arrays["head"], meta=meta)
    except (MotionError, TypeError) as e:
        raise FormatError(str(e), path=p) from None


def _reorder(weights: np.ndarray, names: list[str], p: Path) -> np.ndarray:
    """Columns stored under other names/order are put back in ARKit order by name."""
    if tuple(names) == ARKIT_NAMES:
        return weights
    unknown = [n for n in names if n not in ARKIT_INDEX]
    if unknown or len(set(names)) != len(ARKIT_NAMES) or weights.ndim != 2 or weights.shape[1] != len(names):
        raise FormatError(f"channel_names must be the 52 ARKit names (unknown: {unknown[:5]})",
                          path=p, field="channel_names")
    return weights[:, [names.index(n) for n in ARKIT_NAMES]]
