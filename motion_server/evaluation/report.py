"""Readable tables for eval results (the JSON holds everything; the table holds what a person compares)."""

from __future__ import annotations

from typing import Any

# (key, header, format) shown in the summary table, in this order, when present.
SUMMARY_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("bilabial_closure", "closure", "{:.2f}"),
    ("open_bilabial_ratio", "open/bilab", "{:.1f}"),
    ("lag_frames", "lag", "{:+.1f}"),
    ("lip_vertex_error_cm", "LVE cm", "{:.3f}"),
    ("lip_gap_corr", "gap r", "{:.2f}"),
    ("mae_mouth_jaw", "MAE mouth", "{:.3f}"),
    ("mae_eyes", "MAE eyes", "{:.3f}"),
    ("mae_brows", "MAE brows", "{:.3f}"),
    ("fdd_cm", "FDD cm", "{:.3f}"),
    ("head_error_deg", "head err", "{:.1f}"),
    ("jitter_mouth_jaw", "jitter", "{:.4f}"),
    ("blink_rate_per_min", "blinks/min", "{:.1f}"),
    ("blink_duration_s", "blink s", "{:.2f}"),
    ("head_std_deg", "head std", "{:.1f}"),
    ("head_speed_deg_s", "head deg/s", "{:.1f}"),
    ("diversity", "diversity", "{:.3f}"),
    ("head_seed_difference", "head seeds", "{:.2f}"),
    ("bilabial_closure_next_seed", "closure seed+1", "{:.2f}"),
    ("seam", "seam", "{:.2f}"),
    ("seam_control", "no-join", "{:.2f}"),
    ("transcript_used", "asr used", "{:.2f}"),
    ("word_error_rate", "WER", "{:.3f}"),
    ("gen_seconds", "gen s", "{:.2f}"),
)


def _fmt(v: Any, f: str) -> str:
    if v is None:
        return "-"
    try:
        return f.format(v)
    except (ValueError, TypeError):
        return str(v)


def table(rows: list[dict[str, Any]], first: str, first_header: str) -> str:
    cols = [c for c in SUMMARY_COLUMNS if any(c[0] in r for r in rows)]
    header = [first_header] + [h for _, h, _ in cols]
    body = [[str(r.get(first, ""))] + [_fmt(r.get(k), f) for k, _, f in cols] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(line, widths, strict=True)))
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary(means: dict[str, dict[str, Any]]) -> str:
    return table([{"system": s, **m} for s, m in means.items()], "system", "system")


def per_clip(rows: list[dict[str, Any]]) -> str:
    short = [{**r, "label": f"{_short(r['clip'])} [{r['system']}]"} for r in rows]
    return table(short, "label", "clip [system]")


def _short(name: str, width: int = 32) -> str:
    """Clip names are "<source>__<file>": the file part, keeping its (distinguishing) end."""
    stem = name.split("__", 1)[-1].rsplit(".", 1)[0]
    return stem if len(stem) <= width else "…" + stem[-(width - 1):]


# -- motion statistics against the real references (motion_stats / reference_targets) -----------------

# (key, label, format) of the motion-statistics table, in motion_stats.STAT_KEYS order.
MOTION_ROWS: tuple[tuple[str, str, str], ...] = (
    ("head_std_pitch_deg", "head std pitch (deg)", "{:.2f}"),
    ("head_std_yaw_deg", "head std yaw (deg)", "{:.2f}"),
    ("head_std_roll_deg", "head std roll (deg)", "{:.2f}"),
    ("head_range_deg", "head range, largest axis (deg)", "{:.1f}"),
    ("head_speed_median_deg_s", "head speed median (deg/s)", "{:.1f}"),
    ("head_speed_p95_deg_s", "head speed p95 (deg/s)", "{:.1f}"),
    ("head_jitter_deg", "head jitter (deg/frame^2 @30)", "{:.3f}"),
    ("head_freq_median_hz", "head median frequency (Hz)", "{:.2f}"),
    ("head_translation_std_mm", "head translation std (mm)", "{:.1f}"),
    ("blink_rate_per_min", "blinks per minute", "{:.1f}"),
    ("blink_count", "blinks (count)", "{:.0f}"),
    ("blink_peak_median", "blink peak (eyeBlink)", "{:.2f}"),
    ("blink_duration_ms_median", "blink start-end (ms)", "{:.0f}"),
    ("blink_half_width_ms_median", "blink half width (ms)", "{:.0f}"),
    ("brow_inner_up_std", "browInnerUp std", "{:.3f}"),
    ("brow_outer_up_std", "browOuterUp std", "{:.3f}"),
    ("brow_down_std", "browDown std", "{:.3f}"),
    ("jaw_open_p50", "jawOpen p50", "{:.2f}"),
    ("jaw_open_p90", "jawOpen p90", "{:.2f}"),
    ("jaw_open_p99", "jawOpen p99", "{:.2f}"),
)

# The compact per-clip view: the numbers the targets name.
MOTION_CLIP_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("head_std_pitch_deg", "pitch sd", "{:.2f}"),
    ("head_std_yaw_deg", "yaw sd", "{:.2f}"),
    ("head_std_roll_deg", "roll sd", "{:.2f}"),
    ("head_range_deg", "range", "{:.1f}"),
    ("head_jitter_deg", "jitter", "{:.3f}"),
    ("blink_count", "blinks", "{:.0f}"),
    ("blink_peak_median", "blink pk", "{:.2f}"),
    ("blink_duration_ms_median", "blink ms", "{:.0f}"),
    ("brow_inner_up_std", "brInner sd", "{:.3f}"),
    ("brow_outer_up_std", "brOuter sd", "{:.3f}"),
    ("jaw_open_p90", "jaw p90", "{:.2f}"),
)


def _grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(line, widths, strict=True)))
             for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def motion_summary(per_system: dict[str, dict[str, Any]], targets: dict[str, dict[str, Any]] | None) -> str:
    """One row per statistic: the real references' value and range, then each system's median over clips."""
    systems = list(per_system)
    header = ["motion statistic (median over clips)", "real", "real range", "smoothed"] + systems
    body = []
    for key, label, f in MOTION_ROWS:
        t = (targets or {}).get(key) or {}
        rng = "-" if t.get("low") is None else f"{_fmt(t['low'], f)}-{_fmt(t['high'], f)}"
        body.append([label, _fmt(t.get("value"), f), rng, _fmt(t.get("value_tracker_smoothed"), f)]
                    + [_fmt(per_system[s].get(key), f) for s in systems])
    return _grid(header, body)


def motion_per_clip(rows: list[dict[str, Any]]) -> str:
    """One row per clip and system with the headline motion statistics."""
    body = [[f"{_short(r['clip'])} [{r['system']}]"] + [_fmt(r["motion_stats"].get(k), f) for k, _, f in MOTION_CLIP_COLUMNS]
            for r in rows if r.get("motion_stats")]
    return _grid(["clip [system]"] + [h for _, h, _ in MOTION_CLIP_COLUMNS], body)
