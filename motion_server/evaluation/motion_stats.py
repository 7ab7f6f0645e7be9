"""How much and how a face moves: head, blinks, brows and mouth statistics of a FaceMotion (numpy only).

These are the numbers the "lifelike motion" targets are stated in; the same functions measure the real
references (``reference_targets``) and every generated motion (``talkrig eval``), so the two sides are
always compared with one definition. All statistics are plain floats (None where undefined), keyed by the
names below.

Head (angles from ``FaceMotion.head`` pitch/yaw/roll, converted to degrees). Speed, jitter and spectrum
depend on the frame rate, so they are measured after resampling to ``COMMON_FPS`` (30) by linear
interpolation; std and range do not depend on it and use the motion as it is.

- ``head_std_{pitch,yaw,roll}_deg``: standard deviation over time of each angle.
- ``head_range_deg``: the largest peak-to-peak (max - min) of the three angles over the clip.
- ``head_speed_median_deg_s`` / ``head_speed_p95_deg_s``: per frame the angular speed
  ``|angles[t+1] - angles[t]| * fps`` (Euclidean norm over the three angles, deg/s); its median and
  95th percentile over the clip.
- ``head_jitter_deg``: root mean square, over frames and the three angles, of the second difference
  ``angles[t+1] - 2 angles[t] + angles[t-1]`` in degrees per frame² at 30 fps. Smooth motion (a slow
  sway, a nod) scores near 0; frame-to-frame noise raises it (white noise of std s adds about
  ``sqrt(6) * s``). Face trackers add noise of their own, so a real reference's jitter is an upper bound.
- ``head_freq_median_hz``: per angle the frequency below which half of the (mean-removed, Hann-windowed)
  power spectrum lies, averaged over the three angles; None for clips shorter than 2 s.
- ``head_translation_std_mm``: standard deviation of x, y, z (millimetres), averaged over the three.

Blinks, on the blink signal ``b(t) = (eyeBlinkLeft + eyeBlinkRight) / 2`` at the motion's own rate:

- the baseline is the running median of ``b`` over ``BLINK_BASELINE_S`` (1 s): eyelids that rest
  half-shut (looking down, iPhone captures that never read 0) are not blinks;
- a blink is a maximal run of frames where ``b - baseline > BLINK_DETECT`` (0.15) whose peak rises at
  least ``BLINK_MIN_AMPLITUDE`` (0.25) above the baseline;
- its **start** and **end** are where ``b - baseline`` falls to ``BLINK_EDGE`` (10 %) of the blink's
  amplitude on either side of the peak, located between frames by linear interpolation; the
  **duration** is end - start in ms (``blink_duration_ms_median``); ``blink_half_width_ms_median`` is
  the width at 50 % of the amplitude. A blink cut by the clip's edges (no start or end crossing) is left
  out of every blink statistic;
- ``blink_peak_median``: the median over blinks of the largest ``b`` in the blink (not baseline
  subtracted: the issue's "peak on the eyelid");
- ``blink_rate_per_min``: blinks counted / clip duration in minutes; ``blink_count`` the count.

Brows: ``brow_inner_up_std`` (browInnerUp), ``brow_outer_up_std`` (mean of the browOuterUpLeft/Right
stds) and ``brow_down_std`` (mean of the browDownLeft/Right stds): standard deviation over time, in
weight units.

Mouth: ``jaw_open_p50`` / ``_p90`` / ``_p99``: percentiles of jawOpen over all frames of the clip
(silences included, so p50 of a clip with pauses is low).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig_mapping import FaceMotion
from rig_mapping.arkit import ARKIT_INDEX

COMMON_FPS = 30.0
BLINK_BASELINE_S = 1.0
BLINK_DETECT = 0.15
BLINK_MIN_AMPLITUDE = 0.25
BLINK_EDGE = 0.10
MIN_SPECTRUM_S = 2.0

HEAD_AXES = ("pitch", "yaw", "roll")

# Every key motion_stats() returns, in the order reports show them.
STAT_KEYS: tuple[str, ...] = (
    "head_std_pitch_deg", "head_std_yaw_deg", "head_std_roll_deg", "head_range_deg",
    "head_speed_median_deg_s", "head_speed_p95_deg_s", "head_jitter_deg", "head_freq_median_hz",
    "head_translation_std_mm",
    "blink_rate_per_min", "blink_count", "blink_peak_median", "blink_duration_ms_median",
    "blink_half_width_ms_median",
    "brow_inner_up_std", "brow_outer_up_std", "brow_down_std",
    "jaw_open_p50", "jaw_open_p90", "jaw_open_p99",
)  # fmt: skip


@dataclass(frozen=True)
class Blink:
    """One detected blink; times in seconds from the motion's first frame."""

    start_s: float
    peak_s: float
    end_s: float
    peak: float  # largest blink-signal value in the blink
    amplitude: float  # peak height above the local baseline
    half_width_s: float  # width at 50 % of the amplitude

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# -- head --------------------------------------------------------------------------------------------------


def head_angles_deg(motion: FaceMotion) -> np.ndarray:
    """[T, 3] pitch, yaw, roll in degrees (float64)."""
    return np.degrees(np.asarray(motion.head[:, :3], np.float64))


def _at_common_fps(motion: FaceMotion) -> FaceMotion:
    return motion if abs(motion.fps - COMMON_FPS) < 1e-9 else motion.resample(COMMON_FPS)


def median_frequency(x: np.ndarray, fps: float) -> float:
    """The frequency (Hz) below which half of the mean-removed, Hann-windowed power of ``x`` lies."""
    x = np.asarray(x, np.float64)
    x = (x - x.mean()) * np.hanning(len(x))
    power = np.abs(np.fft.rfft(x)) ** 2
    power[0] = 0.0
    total = power.sum()
    if total <= 1e-18:
        return 0.0
    freqs = np.fft.rfftfreq(len(x), 1.0 / fps)
    return float(freqs[int(np.searchsorted(np.cumsum(power), 0.5 * total))])


def head_stats(motion: FaceMotion) -> dict[str, float | None]:
    """Head rotation and translation statistics (see the module docstring for each definition)."""
    ang = head_angles_deg(motion)
    out: dict[str, float | None] = {f"head_std_{a}_deg": None for a in HEAD_AXES}
    out.update(head_range_deg=None, head_speed_median_deg_s=None, head_speed_p95_deg_s=None,
               head_jitter_deg=None, head_freq_median_hz=None, head_translation_std_mm=None)
    if len(ang) < 2:
        return out
    std = ang.std(axis=0)
    for k, a in enumerate(HEAD_AXES):
        out[f"head_std_{a}_deg"] = float(std[k])
    out["head_range_deg"] = float(np.ptp(ang, axis=0).max())
    out["head_translation_std_mm"] = float(np.asarray(motion.head[:, 3:], np.float64).std(axis=0).mean() * 1000.0)
    m30 = _at_common_fps(motion)
    a30 = head_angles_deg(m30)
    if len(a30) >= 2:
        speed = np.linalg.norm(np.diff(a30, axis=0), axis=1) * COMMON_FPS
        out["head_speed_median_deg_s"] = float(np.median(speed))
        out["head_speed_p95_deg_s"] = float(np.percentile(speed, 95))
    if len(a30) >= 3:
        out["head_jitter_deg"] = float(np.sqrt(np.mean(np.diff(a30, n=2, axis=0) ** 2)))
    if m30.duration >= MIN_SPECTRUM_S:
        out["head_freq_median_hz"] = float(np.mean([median_frequency(a30[:, k], COMMON_FPS) for k in range(3)]))
    return out


# -- blinks ------------------------------------------------------------------------------------------------


def blink_signal(motion: FaceMotion) -> np.ndarray:
    """(eyeBlinkLeft + eyeBlinkRight) / 2 per frame."""
    w = motion.weights
    return 0.5 * (w[:, ARKIT_INDEX["eyeBlinkLeft"]].astype(np.float64) + w[:, ARKIT_INDEX["eyeBlinkRight"]])


def running_median(x: np.ndarray, width: int) -> np.ndarray:
    """Centred running median over ``width`` frames (made odd), edges padded with the edge values."""
    x = np.asarray(x, np.float64)
    half = max(0, int(width) // 2)
    if half == 0 or len(x) == 0:
        return x.copy()
    padded = np.pad(x, half, mode="edge")
    return np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)


def _crossing(r: np.ndarray, peak: int, level: float, step: int) -> float | None:
    """Fractional frame index where ``r`` first falls to ``level`` walking from ``peak`` by ``step``."""
    i = peak
    while 0 <= i + step < len(r):
        j = i + step
        if r[j] <= level:
            # linear interpolation between frame i (above) and j (at or below)
            frac = (r[i] - level) / (r[i] - r[j]) if r[i] != r[j] else 0.0
            return i + step * frac
        i = j
    return None


def detect_blinks(motion: FaceMotion) -> list[Blink]:
    """Blinks by the module docstring's definition (baseline, detection, 10 % start/end crossings)."""
    b = blink_signal(motion)
    if len(b) < 3:
        return []
    fps = motion.fps
    base = running_median(b, int(round(BLINK_BASELINE_S * fps)))
    r = b - base
    above = r > BLINK_DETECT
    edges = np.diff(np.concatenate([[0], above.astype(np.int8), [0]]))
    out: list[Blink] = []
    for a, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        p = int(a + np.argmax(r[a:e]))
        amp = float(r[p])
        if amp < BLINK_MIN_AMPLITUDE:
            continue
        start = _crossing(r, p, BLINK_EDGE * amp, -1)
        end = _crossing(r, p, BLINK_EDGE * amp, +1)
        h0 = _crossing(r, p, 0.5 * amp, -1)
        h1 = _crossing(r, p, 0.5 * amp, +1)
        if start is None or end is None or h0 is None or h1 is None:
            continue  # cut by the clip's edge: its shape is unknown
        out.append(Blink(start_s=start / fps, peak_s=p / fps, end_s=end / fps, peak=float(b[a:e].max()),
                         amplitude=amp, half_width_s=(h1 - h0) / fps))
    return out


def blink_stats(motion: FaceMotion) -> dict[str, float | None]:
    blinks = detect_blinks(motion)
    minutes = motion.duration / 60.0
    return {
        "blink_rate_per_min": len(blinks) / minutes if minutes > 0 else None,
        "blink_count": float(len(blinks)),
        "blink_peak_median": float(np.median([x.peak for x in blinks])) if blinks else None,
        "blink_duration_ms_median": float(np.median([x.duration_s for x in blinks]) * 1000) if blinks else None,
        "blink_half_width_ms_median": float(np.median([x.half_width_s for x in blinks]) * 1000) if blinks else None,
    }


# -- brows and mouth ---------------------------------------------------------------------------------------


def _std(motion: FaceMotion, *names: str) -> float | None:
    if motion.n_frames < 2:
        return None
    return float(np.mean([np.asarray(motion.channel(n), np.float64).std() for n in names]))


def brow_stats(motion: FaceMotion) -> dict[str, float | None]:
    return {
        "brow_inner_up_std": _std(motion, "browInnerUp"),
        "brow_outer_up_std": _std(motion, "browOuterUpLeft", "browOuterUpRight"),
        "brow_down_std": _std(motion, "browDownLeft", "browDownRight"),
    }


def mouth_stats(motion: FaceMotion) -> dict[str, float | None]:
    jaw = np.asarray(motion.channel("jawOpen"), np.float64)
    if jaw.size == 0:
        return {"jaw_open_p50": None, "jaw_open_p90": None, "jaw_open_p99": None}
    p50, p90, p99 = np.percentile(jaw, [50, 90, 99])
    return {"jaw_open_p50": float(p50), "jaw_open_p90": float(p90), "jaw_open_p99": float(p99)}


# -- all together ------------------------------------------------------------------------------------------


def motion_stats(motion: FaceMotion, digits: int | None = 4) -> dict[str, float | None]:
    """Every statistic of the module docstring, keyed as in ``STAT_KEYS``, rounded to ``digits``, plus
    ``duration_s`` (what suite summaries pool the blink rate over)."""
    out: dict[str, float | None] = {}
    out.update(head_stats(motion))
    out.update(blink_stats(motion))
    out.update(brow_stats(motion))
    out.update(mouth_stats(motion))
    if digits is not None:
        out = {k: (None if v is None else round(v, digits)) for k, v in out.items()}
    return {**{k: out[k] for k in STAT_KEYS}, "duration_s": round(motion.duration, 4)}


def median_over_clips(per_clip: Iterable[Mapping[str, Any]], digits: int = 4) -> dict[str, float | None]:
    """Per statistic the median over the clips where it is defined (None where no clip defines it).

    Two exceptions, because short clips make them meaningless one by one: ``blink_rate_per_min`` is
    pooled (all blinks / all minutes; a 4 s clip has 0 or 1 blinks, i.e. 0 or 15 per minute) and
    ``blink_count`` is the total."""
    rows = list(per_clip)
    out: dict[str, float | None] = {}
    for k in STAT_KEYS:
        vals = [float(r[k]) for r in rows if isinstance(r.get(k), int | float) and math.isfinite(float(r[k]))]
        out[k] = round(float(np.median(vals)), digits) if vals else None
    timed = [r for r in rows if r.get("blink_count") is not None and r.get("duration_s")]
    minutes = sum(float(r["duration_s"]) for r in timed) / 60.0
    if minutes > 0:
        out["blink_rate_per_min"] = round(sum(float(r["blink_count"]) for r in timed) / minutes, digits)
        out["blink_count"] = float(sum(float(r["blink_count"]) for r in timed))
    out["clips"] = len(rows)
    return out
