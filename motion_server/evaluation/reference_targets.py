"""Real people's motion statistics, derived from ``../shared/data/motion_reference/`` and shipped as data.

``motion_stats`` measures every reference clip with the same definitions it applies to generated motion;
this module reads the references, groups them and writes ``references/motion_targets.json`` (in the
repository, so ``talkrig eval`` shows the targets without ``../shared``). Regenerate with::

    python -m motion_server.evaluation.reference_targets --ref-dir ../shared/data/motion_reference \\
        --out motion_server/evaluation/references/motion_targets.json --overwrite

Reference groups (each statistic records its group, files, clip count and how it was summarised):

- ``hdtf_speech``: ``dreamtalk/pose/RichardShelby_front_neutral_level1_001.mat``, 83 s of a senator
  speaking (HDTF), Deep3DFaceRecon angles (``coeff[:, 224:227]``, radians, pitch/yaw/roll) at 25 fps.
- ``mead_clips``: the 24 ``dreamtalk/style_clip_3dmm/*.mat`` MEAD clips (3 actors x 8 emotions, ~4 s,
  25 fps), same layout; actors kept their heads fairly still.
- ``hdtf_speech_smoothed``: the HDTF clip after Gaussian smoothing of sigma one frame (40 ms): the
  tracker fits every frame on its own, and its noise inflates speed and jitter; targets carry this
  clip's value as ``value_tracker_smoothed`` (the speaker without most of the tracker's noise).
- ``livelink_takes``: the iPhone Live Link Face recordings that are performances (``apfel``, ``facial``,
  ``S07-001``, ``S88-001``, ``MySlate_3``): blinks, brows and jaw. Their head columns are zero.
- ``livelink_rom``: the two range-of-motion takes (``alex_rom_3``, ``alex_rom_4``): deliberate extremes,
  reported for the jaw's and brows' full range, not as speaking targets.

Rows the iPhone wrote while it had lost the face (``timecode,0``: BlendShapeCount 0, no values) are
skipped: each take is split into its tracked stretches, every stretch is read on its own, blinks are
counted per stretch and the rate divides by the tracked time only (takes with under 20 s of it give
no rate). The CSV is split tolerantly here; each stretch then goes through ``rig_mapping.formats``'
reader, which refuses such rows.

The ``targets`` block picks, per statistic, the value a generated motion is compared with: head
statistics take the HDTF speech as the value and the range over all 25 head clips (HDTF + MEAD) as
low/high; blink, brow and jaw statistics take the Live Link performances.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rig_mapping import FaceMotion

from . import motion_stats as ms

TARGETS_PATH = Path(__file__).resolve().parent / "references" / "motion_targets.json"
FORMAT = "talkrig-motion-targets"
VERSION = 1
DIGITS = 4

HDTF_FILE = "dreamtalk/pose/RichardShelby_front_neutral_level1_001.mat"
MEAD_DIR = "dreamtalk/style_clip_3dmm"
LIVELINK_TAKES = (
    "livelink/alexdjulin/apfel.csv", "livelink/alexdjulin/facial.csv", "livelink/alexdjulin/S07-001.csv",
    "livelink/alexdjulin/S88-001.csv", "livelink/jmtechart/MySlate_3_Jason_Millers_iPhone.csv",
)  # fmt: skip
LIVELINK_ROM = ("livelink/alexdjulin/alex_rom_3.csv", "livelink/alexdjulin/alex_rom_4.csv")
DEEP3D_FPS = 25.0
# A blink rate from less tracked time than this is left out (a 5 s take with no blink is not "0 per minute").
MIN_RATE_S = 20.0
DEEP3D_ANGLES = slice(224, 227)
TRACKER_SMOOTHING_FRAMES = 1.0  # Gaussian sigma (frames at 25 fps) for the hdtf_speech_smoothed group

HEAD_KEYS = tuple(k for k in ms.STAT_KEYS if k.startswith("head_") and k != "head_translation_std_mm")
BLINK_SHAPE_KEYS = {"blink_peak_median": "peak", "blink_duration_ms_median": "duration_ms",
                    "blink_half_width_ms_median": "half_width_ms"}
FACE_KEYS = ("blink_rate_per_min", "brow_inner_up_std", "brow_outer_up_std", "brow_down_std",
             "jaw_open_p50", "jaw_open_p90", "jaw_open_p99")


class ReferenceError(ValueError):
    pass


# -- reading -----------------------------------------------------------------------------------------------


def read_deep3d_angles(path: Path) -> FaceMotion:
    """A Deep3DFaceRecon ``.mat`` (``coeff`` [T, 257]) as a FaceMotion: head angles only, 25 fps."""
    from scipy.io import loadmat

    coeff = np.asarray(loadmat(str(path))["coeff"], np.float64)
    if coeff.ndim != 2 or coeff.shape[1] != 257:
        raise ReferenceError(f"{path}: coeff has shape {list(coeff.shape)}, expected [frames, 257]")
    head = np.zeros((len(coeff), 6), np.float32)
    head[:, :3] = coeff[:, DEEP3D_ANGLES]  # pitch, yaw, roll in radians; no metric translation here
    return FaceMotion.from_arrays(np.zeros((len(coeff), 52), np.float32), head, fps=DEEP3D_FPS,
                                  meta={"source_file": path.name})


def read_livelink_tracked(path: Path) -> list[FaceMotion]:
    """A Live Link Face CSV as its tracked stretches (rows with a full set of values), each at the rate
    the rows were written at (30 Hz rows under 60 fps timecodes read back at 30 fps)."""
    from rig_mapping.formats.livelink_csv import STANDARD_RATES, parse_livelink_csv, parse_timecode

    lines = path.read_text(encoding="utf-8-sig").splitlines()
    if not lines:
        raise ReferenceError(f"{path}: empty file")
    header = lines[0]
    width = len(header.split(","))
    stretches: list[list[str]] = []
    last = -2
    for i, line in enumerate(lines[1:], start=1):
        fields = line.split(",")
        tracked = len(fields) == width and fields[1].strip() not in ("", "0")
        if not tracked:
            continue
        if i != last + 1:
            stretches.append([])
        stretches[-1].append(line)
        last = i
    timecodes = [parse_timecode(s.split(",", 1)[0]) for part in stretches for s in part]
    if not timecodes:
        raise ReferenceError(f"{path}: no tracked rows")
    top = max(ff for _, ff in timecodes)
    fps = next((r for r in STANDARD_RATES if top < r), None)
    if fps is None:
        raise ReferenceError(f"{path}: frame field {top} exceeds every standard rate")
    out = []
    for part in stretches:
        if len(part) < 3:
            continue
        frames = [parse_timecode(s.split(",", 1)[0]) for s in part]
        t = np.array([sec + ff / fps for sec, ff in frames])
        step = float(np.median(np.diff(t)))
        row_rate = min(STANDARD_RATES, key=lambda r: abs(1.0 / r - step))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # clamping of the iPhone's tiny overshoots
            m = parse_livelink_csv("\n".join([header, *part]) + "\n", fps=fps, source=str(path))
        out.append(m.resample(row_rate) if row_rate < fps else m)
    return out


# -- summarising -------------------------------------------------------------------------------------------


def _r(v: float | None) -> float | None:
    return None if v is None else round(float(v), DIGITS)


def _summary(per_clip: dict[str, float | None], statistic: str, group: str) -> dict[str, Any]:
    vals = [v for v in per_clip.values() if v is not None]
    return {
        "value": _r(np.median(vals)) if vals else None,
        "low": _r(min(vals)) if vals else None,
        "high": _r(max(vals)) if vals else None,
        "n_clips": len(vals),
        "statistic": statistic,
        "group": group,
        "per_clip": {k: _r(v) for k, v in per_clip.items()},
    }


def _head_group(name: str, files: dict[str, FaceMotion]) -> dict[str, Any]:
    stats = {f: ms.motion_stats(m, digits=None) for f, m in files.items()}
    return {k: _summary({f: s[k] for f, s in stats.items()}, "median over clips; low/high = min/max over clips",
                        name) for k in HEAD_KEYS}


def _livelink_group(name: str, takes: dict[str, list[FaceMotion]]) -> dict[str, Any]:
    per_take: dict[str, dict[str, float | None]] = {}
    pooled: dict[str, list[float]] = {k: [] for k in BLINK_SHAPE_KEYS.values()}
    for f, parts in takes.items():
        blinks = [b for p in parts for b in ms.detect_blinks(p)]
        minutes = sum(p.duration for p in parts) / 60.0
        whole = FaceMotion.concatenate([p.resample(parts[0].fps) for p in parts])  # std/percentiles: tracked frames
        row: dict[str, float | None] = {"blink_rate_per_min": len(blinks) / minutes
                                        if minutes * 60.0 >= MIN_RATE_S else None,
                                        "tracked_s": minutes * 60.0}
        row.update(ms.brow_stats(whole))
        row.update(ms.mouth_stats(whole))
        shapes = {"peak": [b.peak for b in blinks], "duration_ms": [b.duration_s * 1000 for b in blinks],
                  "half_width_ms": [b.half_width_s * 1000 for b in blinks]}
        for key, field in BLINK_SHAPE_KEYS.items():
            row[key] = float(np.median(shapes[field])) if blinks else None
            pooled[field] += shapes[field]
        per_take[f] = row
    out: dict[str, Any] = {
        k: _summary({f: r[k] for f, r in per_take.items()}, "median over takes; low/high = min/max over takes",
                    name) for k in FACE_KEYS}
    for key, field in BLINK_SHAPE_KEYS.items():
        vals = pooled[field]
        out[key] = {
            "value": _r(np.median(vals)) if vals else None,
            "low": _r(np.percentile(vals, 10)) if vals else None,
            "high": _r(np.percentile(vals, 90)) if vals else None,
            "n_clips": len(takes), "n_blinks": len(vals),
            "statistic": "median over all blinks of the takes; low/high = 10th/90th percentile over blinks",
            "group": name,
            "per_clip": {f: _r(r[key]) for f, r in per_take.items()},
        }
    out["tracked_s"] = {f: _r(r["tracked_s"]) for f, r in per_take.items()}
    return out


def derive(ref_dir: Path) -> dict[str, Any]:
    """Every reference group's statistics and the chosen targets, as a JSON-ready dict."""
    ref_dir = Path(ref_dir)
    hdtf = ref_dir / HDTF_FILE
    mead = sorted((ref_dir / MEAD_DIR).glob("*.mat"))
    missing = [str(p) for p in [hdtf, *(ref_dir / f for f in LIVELINK_TAKES + LIVELINK_ROM)] if not p.is_file()]
    if missing or not mead:
        raise ReferenceError(f"reference files missing under {ref_dir}: {missing or [str(ref_dir / MEAD_DIR)]}")
    hdtf_m = {HDTF_FILE: read_deep3d_angles(hdtf)}
    mead_m = {f"{MEAD_DIR}/{p.name}": read_deep3d_angles(p) for p in mead}
    groups: dict[str, Any] = {
        "hdtf_speech": _head_group("hdtf_speech", hdtf_m),
        "mead_clips": _head_group("mead_clips", mead_m),
        "livelink_takes": _livelink_group("livelink_takes", {f: read_livelink_tracked(ref_dir / f) for f in LIVELINK_TAKES}),
        "livelink_rom": _livelink_group("livelink_rom", {f: read_livelink_tracked(ref_dir / f) for f in LIVELINK_ROM}),
    }
    # Deep3DFaceRecon fits every frame on its own; its frame-to-frame noise inflates speed and jitter. The
    # same clip smoothed over one frame (40 ms) shows how much of those is the tracker, not the speaker.
    groups["hdtf_speech_smoothed"] = _head_group(
        "hdtf_speech_smoothed",
        {f: m.smoothed(TRACKER_SMOOTHING_FRAMES, channels=["pitch", "yaw", "roll"]) for f, m in hdtf_m.items()})
    all_head = {**hdtf_m, **mead_m}
    head_all = _head_group("hdtf_speech+mead_clips", all_head)
    targets: dict[str, Any] = {}
    for k in HEAD_KEYS:
        targets[k] = {"value": groups["hdtf_speech"][k]["value"], "low": head_all[k]["low"],
                      "high": head_all[k]["high"], "source": [HDTF_FILE, f"{MEAD_DIR}/*.mat"],
                      "n_clips": head_all[k]["n_clips"],
                      "statistic": "value: the HDTF speech clip; low/high: min/max over the HDTF clip and the "
                                   "24 MEAD clips",
                      "value_tracker_smoothed": groups["hdtf_speech_smoothed"][k]["value"]}
    for k in FACE_KEYS + tuple(BLINK_SHAPE_KEYS):
        g = groups["livelink_takes"][k]
        targets[k] = {"value": g["value"], "low": g["low"], "high": g["high"], "source": list(LIVELINK_TAKES),
                      "n_clips": g["n_clips"], "statistic": g["statistic"]}
        if "n_blinks" in g:
            targets[k]["n_blinks"] = g["n_blinks"]
    targets["head_translation_std_mm"] = {"value": None, "low": None, "high": None, "source": [],
                                          "statistic": "no reference: the head tracks have no metric translation"}
    targets["blink_count"] = {"value": None, "low": None, "high": None, "source": [],
                              "statistic": "depends on clip length; compare blink_rate_per_min"}
    return {
        "format": FORMAT, "version": VERSION,
        "regenerate": "python -m motion_server.evaluation.reference_targets --ref-dir ../shared/data/motion_reference "
                      "--out motion_server/evaluation/references/motion_targets.json --overwrite",
        "definitions": "motion_server/evaluation/motion_stats.py (module docstring)",
        "reference_dir": "../shared/data/motion_reference (README.md there: licenses, formats)",
        "thresholds": {"common_fps": ms.COMMON_FPS, "blink_baseline_s": ms.BLINK_BASELINE_S,
                       "blink_detect": ms.BLINK_DETECT, "blink_min_amplitude": ms.BLINK_MIN_AMPLITUDE,
                       "blink_edge": ms.BLINK_EDGE, "min_rate_s": MIN_RATE_S,
                       "tracker_smoothing_frames": TRACKER_SMOOTHING_FRAMES},
        "targets": {k: targets[k] for k in ms.STAT_KEYS},
        "groups": groups,
    }


def load_targets(path: Path = TARGETS_PATH) -> dict[str, Any]:
    """The shipped targets file (``{"targets": {stat: {"value", "low", "high", ...}}, ...}``)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("format") != FORMAT:
        raise ReferenceError(f"{path} is not a {FORMAT} file")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m motion_server.evaluation.reference_targets",
                                description="Derive the real-motion targets from the motion reference folder.")
    p.add_argument("--ref-dir", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "motion_reference",
                   help="the motion_reference folder (default: ../shared/data/motion_reference next to the repo)")
    p.add_argument("--out", type=Path, default=TARGETS_PATH, help=f"JSON to write (default {TARGETS_PATH})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    args = p.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"{args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    try:
        data = derive(args.ref_dir)
    except (ReferenceError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
