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
