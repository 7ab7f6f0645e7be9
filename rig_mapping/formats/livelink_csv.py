"""Live Link Face CSV (Epic's iPhone app) read/write.

Columns are found **by header name, never by position**: the app's order differs from Apple's
(JawRight before JawLeft, MouthRight before MouthLeft). ``Timecode`` is ``HH:MM:SS:FF.fff``: a frame
number (with a sub-frame fraction) at the recording rate, 60 fps by default in the app.

Frame rate: ``fps=None`` detects it from the largest frame field once the file spans a second boundary
(smallest standard rate above it), else assumes the app default of 60. Pass ``fps`` when known.
So that TalkRig's own files read back at their rate, the writer starts a clip shorter than a second at
a rate other than 60 just before a second boundary (its first timecode is then not 0), and warns when
the rate is not one a reader can detect.

Head pose: ``HeadYaw/HeadPitch/HeadRoll`` are taken as rotations about the ARKit face-anchor axes
(+X to the face's left, +Y up, +Z out of the face), which are the axes of ``HEAD_CHANNELS``, so by
default pitch = HeadPitch, yaw = HeadYaw, roll = HeadRoll (``head_signs=(1, 1, 1)`` for pitch, yaw,
roll). This has not been verified against a device recording: flip a sign with ``head_signs`` if a
clip turns the wrong way. Units: recent app versions write radians; a column set whose magnitude
exceeds pi is read as degrees (``angle_unit`` forces either). Eye rotation columns are written as
zeros and ignored on read (the eyeLook* channels carry gaze).

Irregular timecodes (dropped or jittered frames) are resampled onto a uniform grid at the file's fps by
linear interpolation; duplicate timecodes keep the first row.

Tracking lost: where the phone sees no face the app writes ``timecode,0`` (BlendShapeCount 0, no other
fields). Such rows keep their time (the clip stays as long as the recording, in sync with its audio).
A hole of up to ``MAX_BRIDGE_SECONDS`` (0.5 s) is bridged by linear interpolation between the tracked
frames around it (at the start or end of the take: the nearest tracked frame is held); a longer hole
eases to the neutral face (every weight and head angle 0) over ``GAP_EASE_SECONDS`` at each edge and is
reported in a warning. ``meta["tracking_gaps"]`` lists every hole: ``start``/``end`` (seconds from the
clip start), ``seconds`` (time without tracking), ``rows``, ``fill`` (interpolated, held or neutral).
A last row cut off mid-line (the recording stopped while writing it, no line end) is left out with a
warning; anything else malformed is refused with the line number.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from pathlib import Path

import numpy as np

from ..arkit import ARKIT_NAMES, NUM_CHANNELS
from ..motion import MAX_HEAD_ANGLE, FaceMotion, MotionError
from ._io import check_writable, write_atomic
from .errors import FormatError

# Exact header written by the app (Timecode, BlendShapeCount, 52 shapes, 9 rotations).
LLF_SHAPE_NAMES: tuple[str, ...] = (
    "EyeBlinkLeft", "EyeLookDownLeft", "EyeLookInLeft", "EyeLookOutLeft", "EyeLookUpLeft",
    "EyeSquintLeft", "EyeWideLeft", "EyeBlinkRight", "EyeLookDownRight", "EyeLookInRight",
    "EyeLookOutRight", "EyeLookUpRight", "EyeSquintRight", "EyeWideRight",
    "JawForward", "JawRight", "JawLeft", "JawOpen",
    "MouthClose", "MouthFunnel", "MouthPucker", "MouthRight", "MouthLeft",
    "MouthSmileLeft", "MouthSmileRight", "MouthFrownLeft", "MouthFrownRight",
    "MouthDimpleLeft", "MouthDimpleRight", "MouthStretchLeft", "MouthStretchRight",
    "MouthRollLower", "MouthRollUpper", "MouthShrugLower", "MouthShrugUpper",
    "MouthPressLeft", "MouthPressRight", "MouthLowerDownLeft", "MouthLowerDownRight",
    "MouthUpperUpLeft", "MouthUpperUpRight",
    "BrowDownLeft", "BrowDownRight", "BrowInnerUp", "BrowOuterUpLeft", "BrowOuterUpRight",
    "CheekPuff", "CheekSquintLeft", "CheekSquintRight", "NoseSneerLeft", "NoseSneerRight",
    "TongueOut",
)  # fmt: skip
LLF_ROTATION_NAMES: tuple[str, ...] = (
    "HeadYaw", "HeadPitch", "HeadRoll",
    "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch", "RightEyeRoll",
)  # fmt: skip
LLF_HEADER: tuple[str, ...] = ("Timecode", "BlendShapeCount") + LLF_SHAPE_NAMES + LLF_ROTATION_NAMES
BLEND_SHAPE_COUNT = len(LLF_SHAPE_NAMES) + len(LLF_ROTATION_NAMES)  # 61, as the app writes

# ARKit camelCase -> LLF PascalCase column; checked at import so the two tables cannot drift apart.
ARKIT_TO_LLF: dict[str, str] = {n: n[0].upper() + n[1:] for n in ARKIT_NAMES}
assert sorted(ARKIT_TO_LLF.values()) == sorted(LLF_SHAPE_NAMES) and len(LLF_SHAPE_NAMES) == NUM_CHANNELS

DEFAULT_FPS = 60.0
# Rates detection can report (the smallest one above the largest frame field). Lower rates are safe to
# list: a file spanning a second boundary holds that second's last frame, so a 24 fps file shows 23.
STANDARD_RATES = (12.0, 15.0, 20.0, 24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 120.0)
# Tracking-lost rows (BlendShapeCount 0): a hole of up to this long is bridged by interpolation; a
# blink lasts 0.1-0.4 s and a syllable about 0.2 s, so up to half a second a straight line between the
# tracked frames is a plausible face. Longer holes ease to neutral over GAP_EASE_SECONDS and are reported.
MAX_BRIDGE_SECONDS = 0.5
GAP_EASE_SECONDS = 0.2
_TIMECODE = re.compile(r"^(\d{1,3}):(\d{2}):(\d{2})[:;](\d+(?:\.\d*)?)$")


def parse_timecode(text: str) -> tuple[int, float]:
    """``HH:MM:SS:FF.fff`` -> (whole seconds, frame field as float). Raises ValueError."""
    m = _TIMECODE.match(text.strip())
    if not m:
        raise ValueError(f"bad timecode {text!r}; expected HH:MM:SS:FF.fff")
    h, mi, s, ff = int(m[1]), int(m[2]), int(m[3]), float(m[4])
    if mi >= 60 or s >= 60:
        raise ValueError(f"bad timecode {text!r}: minutes and seconds must be < 60")
    return h * 3600 + mi * 60 + s, ff


def format_timecode(frame: int, fps: int) -> str:
    secs, ff = divmod(int(frame), fps)
    h, rem = divmod(secs, 3600)
    mi, s = divmod(rem, 60)
    return f"{h:02d}:{mi:02d}:{s:02d}:{ff:02d}.000"


def read_livelink_csv(
    path: str | Path,
    fps: float | None = None,
    mirror: bool = False,
    angle_unit: str = "auto",
    head_signs: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> FaceMotion:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(f"not a UTF-8 text file ({e})", path=p) from None
    return parse_livelink_csv(text, fps=fps, mirror=mirror, angle_unit=angle_unit, head_signs=head_signs,
                              source=str(p))


def parse_livelink_csv(
    text: str,
    fps: float | None = None,
    mirror: bool = False,
    angle_unit: str = "auto",
    head_signs: tuple[float, float, float] = (1.0, 1.0, 1.0),
    source: str = "<text>",
) -> FaceMotion:
    """Parse Live Link Face CSV text. See the module docstring for fps, units and signs."""
    if angle_unit not in ("auto", "rad", "deg"):
        raise ValueError(f"angle_unit must be 'auto', 'rad' or 'deg', got {angle_unit!r}")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows or not any(c.strip() for c in rows[0]):
        raise FormatError("empty file: expected a header line starting with Timecode", path=source, line=1)
    header = [c.strip() for c in rows[0]]
    col = _column_index(header, source)

    timecodes: list[tuple[int, float]] = []
    values: list[list[float]] = []
    lines: list[int] = []
    wanted = [col[ARKIT_TO_LLF[n]] for n in ARKIT_NAMES]
    head_cols = [col.get(n) for n in ("HeadPitch", "HeadYaw", "HeadRoll")]
    has_head = all(c is not None for c in head_cols)
    if any(c is not None for c in head_cols) and not has_head:
        raise FormatError("header has some but not all of HeadPitch, HeadYaw, HeadRoll; include all three "
                          "or none", path=source, line=1)
    count_col = col.get("BlendShapeCount")
    body = [(lineno, row) for lineno, row in enumerate(rows[1:], start=2) if row and any(c.strip() for c in row)]
    # A file whose writer was stopped mid-line (the phone app killed, a disk full) ends without a
    # newline; that one incomplete last row is dropped with a warning instead of refusing the take.
    cut_last = bool(body) and not text.rstrip(" \t").endswith(("\n", "\r"))
    n_cols = len(wanted) + (3 if has_head else 0)
    for k, (lineno, row) in enumerate(body):
        if _tracking_lost(row, count_col):
            try:  # a row the app writes while it sees no face: "timecode,0"
                timecodes.append(parse_timecode(row[col["Timecode"]]))
            except (ValueError, IndexError) as e:
                raise FormatError(str(e), path=source, line=lineno) from None
            values.append([math.nan] * n_cols)
            lines.append(lineno)
            continue
        if len(row) != len(header):
            if cut_last and k == len(body) - 1 and len(row) < len(header):
                warnings.warn(f"{source}: line {lineno} is cut off ({len(row)} of {len(header)} fields, no "
                              "line end): the recording stopped mid-line; that row is left out", stacklevel=3)
                continue
            raise FormatError(f"row has {len(row)} fields but the header has {len(header)}; "
                              "the file is truncated or has a stray comma", path=source, line=lineno)
        try:
            timecodes.append(parse_timecode(row[col["Timecode"]]))
        except ValueError as e:
            raise FormatError(str(e), path=source, line=lineno) from None
        vals = []
        for c in wanted + ([c for c in head_cols if c is not None] if has_head else []):
            try:
                v = float(row[c])
            except ValueError:
                raise FormatError(f"column {header[c]!r} is not a number: {row[c]!r}", path=source,
                                  line=lineno) from None
            if not math.isfinite(v):
                raise FormatError(f"column {header[c]!r} is {row[c]!r}; every value must be finite",
                                  path=source, line=lineno)
            vals.append(v)
        values.append(vals)
        lines.append(lineno)
    if not values:
        raise FormatError("no data rows after the header", path=source, line=2)

    secs = np.array([t[0] for t in timecodes], np.float64)
    ff = np.array([t[1] for t in timecodes], np.float64)
    rate, detected = _choose_fps(secs, ff, fps, source, lines)
    t = secs + ff / rate
    data = np.array(values, np.float64)
    t, data, lines_kept = _monotonic(t, data, lines, source)
    lost = np.isnan(data[:, 0])
    grid_t, data, resampled = _to_grid(t[~lost], data[~lost], rate, all_t=t)
    gaps = _tracking_gaps(t, lost, float(t[0]))
    if gaps:
        _fill_long_gaps(grid_t, data, gaps)
        long_gaps = [g for g in gaps if g["fill"] == "neutral"]
        if long_gaps:
            listed = ", ".join(f"{g['seconds']:.2f} s from {g['start']:.2f} s" for g in long_gaps[:4])
            more = f" and {len(long_gaps) - 4} more" if len(long_gaps) > 4 else ""
            warnings.warn(f"{source}: face tracking was lost for more than {MAX_BRIDGE_SECONDS:g} s "
                          f"{len(long_gaps)} time(s) ({listed}{more}); those stretches ease to the neutral "
                          "face (meta['tracking_gaps'] lists every gap)", stacklevel=3)

    weights = data[:, :NUM_CHANNELS]
    head = np.zeros((len(grid_t), 6), np.float64)
    unit = "none"
    if has_head:
        rot = data[:, NUM_CHANNELS:NUM_CHANNELS + 3]  # pitch, yaw, roll
        unit = angle_unit if angle_unit != "auto" else ("deg" if np.abs(rot).max(initial=0) > math.pi else "rad")
        if unit == "deg":
            rot = np.deg2rad(rot)
        rot = rot * np.asarray(head_signs, np.float64)
        if np.abs(rot).max(initial=0) > MAX_HEAD_ANGLE:
            i = int(np.argmax(np.abs(rot).max(axis=1)))
            raise FormatError(f"head rotation of {float(np.abs(rot[i]).max()):.2f} rad is beyond a plausible "
                              f"head turn (units read as {unit}); pass angle_unit='deg' or 'rad'",
                              path=source, line=lines_kept[min(i, len(lines_kept) - 1)])
        head[:, :3] = rot
    meta = {
        "source": "livelink_csv",
        "source_file": Path(source).name,
        "start_seconds": float(t[0]),
        "fps_detected": detected,
        "angle_unit": unit,
        "resampled": resampled,
        "mirrored": bool(mirror),
        "tracking_gaps": gaps,
    }
    try:
        motion = FaceMotion.from_arrays(weights, head, fps=rate, meta=meta, clamp=True)
    except MotionError as e:
        raise FormatError(str(e), path=source) from None
    return motion.mirrored() if mirror else motion


def _column_index(header: list[str], source: str) -> dict[str, int]:
    exact = {h: i for i, h in enumerate(header)}
    folded = {h.lower(): i for i, h in enumerate(header)}
    col: dict[str, int] = {}
    for name in LLF_HEADER:
        i = exact.get(name, folded.get(name.lower()))
        if i is not None:
            col[name] = i
    missing = [n for n in ("Timecode",) + LLF_SHAPE_NAMES if n not in col]
    if missing:
        raise FormatError(f"header lacks columns {missing[:6]}{' ...' if len(missing) > 6 else ''} "
                          f"({len(missing)} missing); a Live Link Face CSV starts with "
                          "'Timecode,BlendShapeCount,EyeBlinkLeft,...'", path=source, line=1)
    return col


def _choose_fps(secs: np.ndarray, ff: np.ndarray, fps: float | None, source: str,
                lines: list[int]) -> tuple[float, bool]:
    if fps is not None:
        fps = float(fps)
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be positive, got {fps}")
        bad = np.flatnonzero(ff >= fps)
        if bad.size:
            raise FormatError(f"frame field {ff[bad[0]]:g} is not below fps={fps:g}; the file was recorded "
                              "at a higher rate: pass that fps (or fps=None to detect it)",
                              path=source, line=lines[bad[0]])
        return fps, False
    top = float(ff.max())
    if len(np.unique(secs)) >= 2:
        for rate in STANDARD_RATES:
            if top < rate:
                return rate, True
        i = int(np.argmax(ff))
        raise FormatError(f"frame field {top:g} exceeds every standard rate; pass fps explicitly",
                          path=source, line=lines[i])
    if top >= DEFAULT_FPS:
        i = int(np.argmax(ff))
        raise FormatError(f"frame field {top:g} is not below the default {DEFAULT_FPS:g} fps; pass fps",
                          path=source, line=lines[i])
    return DEFAULT_FPS, False


def _monotonic(t: np.ndarray, data: np.ndarray, lines: list[int], source: str):
    dt = np.diff(t)
    back = np.flatnonzero(dt < -1e-9)
    if back.size:
        k = back[0] + 1
        raise FormatError(f"timecode goes backwards (from {t[k - 1]:.4f}s to {t[k]:.4f}s); rows must be in "
                          "time order", path=source, line=lines[k])
    keep = np.concatenate([[True], dt > 1e-9])
    return t[keep], data[keep], [ln for ln, k in zip(lines, keep, strict=True) if k]


def _to_grid(t: np.ndarray, data: np.ndarray, fps: float,
             all_t: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Put rows at times ``t`` on a uniform grid at ``fps`` spanning ``all_t`` (every row's time,
    tracking-lost rows included, so the clip keeps its length and its sync with the audio); frames
    between or beyond the rows are interpolated / held."""
    span = t if all_t is None else all_t
    rel_all = (span - span[0]) * fps
    n = int(round(rel_all[-1])) + 1
    on_grid = len(span) == n and np.allclose(rel_all, np.arange(n), atol=1e-3)
    if on_grid and len(t) == len(span):
        return rel_all / fps, data, False  # already one row per frame
    rel = (t - span[0]) * fps
    grid = np.arange(n, dtype=np.float64)
    out = np.empty((n, data.shape[1]), np.float64)
    if len(t) == 0:  # the face was never tracked: the neutral face throughout
        out[:] = 0.0
        return grid / fps, out, not on_grid
    for c in range(data.shape[1]):
        out[:, c] = np.interp(grid, rel, data[:, c])
    return grid / fps, out, not on_grid


def _tracking_lost(row: list[str], count_col: int | None) -> bool:
    """A ``BlendShapeCount`` of 0: the app saw no face in this frame and wrote only the timecode."""
    if count_col is None or count_col >= len(row):
        return False
    try:
        return float(row[count_col]) == 0
    except ValueError:
        return False


def _tracking_gaps(t: np.ndarray, lost: np.ndarray, t0: float) -> list[dict]:
    """Runs of tracking-lost rows as {start, end, seconds, rows, fill} (times from the clip start).

    ``seconds`` is the time without tracking that has to be filled: from the last tracked row before
    the run to the first one after it (or to the clip's edge). Up to ``MAX_BRIDGE_SECONDS`` the curves
    are interpolated across (an edge gap holds the nearest tracked frame); longer gaps ease to neutral."""
    gaps: list[dict] = []
    idx = np.flatnonzero(lost)
    if idx.size == 0:
        return gaps
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    for run in runs:
        a, b = int(run[0]), int(run[-1])
        before = float(t[a - 1]) if a > 0 else None
        after = float(t[b + 1]) if b + 1 < len(t) else None
        lo = before if before is not None else float(t[a])
        hi = after if after is not None else float(t[b])
        seconds = hi - lo
        if before is None and after is None:
            fill = "neutral"
        elif seconds <= MAX_BRIDGE_SECONDS + 1e-9:
            fill = "interpolated" if before is not None and after is not None else "held"
        else:
            fill = "neutral"
        gaps.append({"start": round(float(t[a]) - t0, 4), "end": round(float(t[b]) - t0, 4),
                     "seconds": round(seconds, 4), "rows": b - a + 1, "fill": fill,
                     "_lo": None if before is None else before - t0,
                     "_hi": None if after is None else after - t0})
    return gaps


def _fill_long_gaps(grid_t: np.ndarray, data: np.ndarray, gaps: list[dict]) -> None:
    """Ease the frames inside each long gap to the neutral face (every column 0) and back, over
    ``GAP_EASE_SECONDS`` at each tracked edge, so nothing jumps and a frozen mid-blink or mid-word pose
    is not held for seconds. In place; removes the private edge times from ``gaps``."""
    for g in gaps:
        lo, hi = g.pop("_lo"), g.pop("_hi")
        if g["fill"] != "neutral":
            continue
        start = lo if lo is not None else g["start"] - 1e-9
        end = hi if hi is not None else g["end"] + 1e-9
        inside = (grid_t > start) & (grid_t < end)
        if not inside.any():
            continue
        tt = grid_t[inside]
        ease = min(GAP_EASE_SECONDS, 0.5 * (end - start))
        w = np.ones_like(tt)  # 1 = neutral
        if lo is not None:
            w = np.minimum(w, _smoothstep((tt - lo) / ease))
        if hi is not None:
            w = np.minimum(w, _smoothstep((hi - tt) / ease))
        data[inside] *= (1.0 - w)[:, None]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def format_livelink_csv(motion: FaceMotion, head_signs: tuple[float, float, float] = (1.0, 1.0, 1.0),
                        mirror: bool = False) -> str:
    """The CSV text for ``motion`` at its own (integer) frame rate; head angles in radians."""
    rate = int(round(motion.fps))
    if abs(motion.fps - rate) > 1e-6 or rate <= 0:
        raise FormatError(f"Live Link Face timecodes need a whole-number frame rate, motion has {motion.fps:g} "
                          "fps; resample first (motion.resample(30))", field="fps")
    if mirror:
        motion = motion.mirrored()
    if float(rate) not in STANDARD_RATES:
        warnings.warn(f"{rate} fps is not a rate Live Link Face readers detect from timecodes; read the file "
                      f"back with fps={rate}", stacklevel=2)
    llf_cols = [ARKIT_NAMES.index(n[0].lower() + n[1:]) for n in LLF_SHAPE_NAMES]
    signs = np.asarray(head_signs, np.float64)
    pyr = motion.head[:, :3].astype(np.float64) / signs  # undo the read mapping
    out = io.StringIO()
    out.write(",".join(LLF_HEADER) + "\n")
    w = motion.weights[:, llf_cols]
    # A clip of at most one second starting at frame 0 never crosses a second boundary, so a reader
    # would take the app default of 60 fps: start it so that its last frame is frame 0 of second 1.
    first = rate - motion.n_frames + 1 if 1 < motion.n_frames <= rate and rate != DEFAULT_FPS else 0
    for i in range(motion.n_frames):
        # float32 values need 9 significant digits to survive the text round trip exactly.
        shapes = ",".join(format(float(v), ".9g") for v in w[i])
        p, y, r = (format(float(v), ".9g") for v in pyr[i])
        out.write(f"{format_timecode(first + i, rate)},{BLEND_SHAPE_COUNT},{shapes},{y},{p},{r},0,0,0,0,0,0\n")
    return out.getvalue()


def write_livelink_csv(motion: FaceMotion, path: str | Path, overwrite: bool = False,
                       head_signs: tuple[float, float, float] = (1.0, 1.0, 1.0), mirror: bool = False) -> Path:
    p = check_writable(path, overwrite)
    write_atomic(p, format_livelink_csv(motion, head_signs=head_signs, mirror=mirror).encode("utf-8"))
    return p
