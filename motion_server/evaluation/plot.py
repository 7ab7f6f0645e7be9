"""A picture of a motion for people: the audio waveform over the main curves and the head angles.

Panels share one time axis: waveform; jaw and mouth; eyelids (blinks); brows; head pitch/yaw/roll in
degrees. Each panel's title gives its ``motion_stats`` numbers next to the real references' (from
``references/motion_targets.json``), and the references are drawn where a level means something: the
real jawOpen percentiles, the real blink-peak range, and bars right of the brow and head panels that
span one real standard deviation around each curve's mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rig_mapping import FaceMotion

from . import motion_stats as ms

MOUTH_CURVES = (("jawOpen", ("jawOpen",)), ("mouthClose", ("mouthClose",)),
                ("mouthFunnel", ("mouthFunnel",)), ("mouthPucker", ("mouthPucker",)),
                ("mouthSmile L/R", ("mouthSmileLeft", "mouthSmileRight")),
                ("mouthLowerDown L/R", ("mouthLowerDownLeft", "mouthLowerDownRight")))
BROW_CURVES = (("browInnerUp", ("browInnerUp",)), ("browOuterUp L/R", ("browOuterUpLeft", "browOuterUpRight")),
               ("browDown L/R", ("browDownLeft", "browDownRight")))
HEAD_COLOURS = ("tab:red", "tab:green", "tab:blue")


def _curve(motion: FaceMotion, names: tuple[str, ...]) -> np.ndarray:
    return np.mean([np.asarray(motion.channel(n), np.float64) for n in names], axis=0)


def _num(v: Any, f: str = "{:.2f}") -> str:
    return "-" if v is None else f.format(v)


def _waveform(ax: Any, audio: np.ndarray | None, sr: int | None, duration: float) -> None:
    ax.set_ylabel("audio")
    ax.set_yticks([])
    if audio is None or not sr or len(audio) == 0:
        ax.text(0.5, 0.5, "no audio given (--audio FILE)", ha="center", va="center", transform=ax.transAxes,
                color="0.4")
        return
    x = np.asarray(audio, np.float64).ravel()
    # min/max per bin: a faithful envelope at any length without drawing every sample
    bins = int(min(len(x), 4000))
    edges = np.linspace(0, len(x), bins + 1).astype(np.int64)
    lo = np.minimum.reduceat(x, edges[:-1])
    hi = np.maximum.reduceat(x, edges[:-1])
    t = edges[:-1] / sr
    ax.fill_between(t, lo, hi, color="0.35", linewidth=0)
    peak = float(np.abs(x).max()) or 1.0
    ax.set_ylim(-1.05 * peak, 1.05 * peak)
    ax.set_title(f"audio ({len(x) / sr:.1f} s)", loc="left", fontsize=10)


def _real_bars(ax: Any, bars: list[tuple[float, float, str]]) -> None:
    """Thick bars just right of the plot: centre ± one real standard deviation, one per curve, so several
    references can be shown without shading over each other."""
    from matplotlib.transforms import blended_transform_factory

    tr = blended_transform_factory(ax.transAxes, ax.transData)
    lo, hi = ax.get_ylim()  # call after the limits are set: the bars stay inside them
    for k, (centre, sd, colour) in enumerate(bars):
        x = 1.006 + 0.008 * k
        ax.plot([x, x], [max(lo, centre - sd), min(hi, centre + sd)], transform=tr, color=colour, linewidth=4,
                alpha=0.55, clip_on=False, solid_capstyle="butt")
    if bars:  # a legend entry that says what the bars are
        ax.plot([], [], color="0.5", linewidth=4, alpha=0.55, label="real ±1 std (bars)")


def plot_motion(motion: FaceMotion, out: str | Path, audio: np.ndarray | None = None, sr: int | None = None,
                targets: dict[str, dict[str, Any]] | None = None, size_px: tuple[int, int] = (1600, 1200),
                dpi: int = 100, title: str | None = None) -> Path:
    """Write the PNG to ``out`` (any existing file is replaced: callers check first) and return its path.

    ``targets`` is the ``targets`` block of the motion targets file (None: load the shipped one)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    if targets is None:
        from .reference_targets import load_targets

        targets = load_targets()["targets"]

    def real(key: str, field: str = "value") -> Any:
        return (targets.get(key) or {}).get(field)

    stats = ms.motion_stats(motion)
    t = motion.times
    duration = max(motion.duration, len(audio) / sr if audio is not None and sr else 0.0)
    fig, axes = plt.subplots(5, 1, sharex=True, figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi,
                             gridspec_kw={"height_ratios": [0.8, 1.3, 1.0, 1.0, 1.3]})
    ax_audio, ax_mouth, ax_eyes, ax_brows, ax_head = axes

    _waveform(ax_audio, audio, sr, duration)

    # -- mouth: the real jawOpen percentiles as levels the jaw should reach ------------------------------
    for label, names in MOUTH_CURVES:
        ax_mouth.plot(t, _curve(motion, names), label=label, linewidth=1.6 if label == "jawOpen" else 1.0)
    for p, style in (("p50", ":"), ("p90", "--"), ("p99", "-.")):
        v = real(f"jaw_open_{p}")
        if v is not None:
            ax_mouth.axhline(v, color="0.3", linestyle=style, linewidth=0.9, label=f"real jawOpen {p}")
    ax_mouth.set_ylim(0, 1)
    ax_mouth.set_ylabel("weight")
    ax_mouth.set_title(f"jaw and mouth: jawOpen p50/p90/p99 {_num(stats['jaw_open_p50'])}/{_num(stats['jaw_open_p90'])}/"
                       f"{_num(stats['jaw_open_p99'])}  (real {_num(real('jaw_open_p50'))}/{_num(real('jaw_open_p90'))}/"
                       f"{_num(real('jaw_open_p99'))})", loc="left", fontsize=10)

    # -- eyelids: the real blink-peak range shaded, detected blinks marked ------------------------------
    lo, hi = real("blink_peak_median", "low"), real("blink_peak_median", "high")
    if lo is not None:
        ax_eyes.axhspan(lo, hi, color="tab:orange", alpha=0.12, label="real blink peaks (10-90 %)")
    ax_eyes.plot(t, motion.channel("eyeBlinkLeft"), label="eyeBlinkLeft", color="tab:purple", linewidth=1.2)
    ax_eyes.plot(t, motion.channel("eyeBlinkRight"), label="eyeBlinkRight", color="tab:cyan", linewidth=1.0,
                 linestyle="--")
    blinks = ms.detect_blinks(motion)
    if blinks:
        ax_eyes.plot([b.peak_s for b in blinks], [b.peak for b in blinks], "v", color="k", markersize=5,
                     label="blinks counted")
    ax_eyes.set_ylim(0, 1.05)
    ax_eyes.set_ylabel("weight")
    ax_eyes.set_title(f"eyelids: {len(blinks)} blinks = {_num(stats['blink_rate_per_min'], '{:.0f}')}/min, peak "
                      f"{_num(stats['blink_peak_median'])}, {_num(stats['blink_duration_ms_median'], '{:.0f}')} ms  "
                      f"(real {_num(real('blink_rate_per_min', 'low'), '{:.0f}')}-"
                      f"{_num(real('blink_rate_per_min', 'high'), '{:.0f}')}/min, peak {_num(real('blink_peak_median'))}, "
                      f"{_num(real('blink_duration_ms_median'), '{:.0f}')} ms)", loc="left", fontsize=10)

    # -- brows: one real std around each curve's mean ---------------------------------------------------
    top = 0.1
    bars = []
    for (label, names), key, colour in zip(BROW_CURVES, ("brow_inner_up_std", "brow_outer_up_std", "brow_down_std"),
                                           ("tab:blue", "tab:green", "tab:brown"), strict=True):
        c = _curve(motion, names)
        ax_brows.plot(t, c, label=label, color=colour, linewidth=1.2)
        sd = real(key)
        if sd is not None:
            bars.append((float(c.mean()), sd, colour))
        top = max(top, float(c.max()) * 1.15, float(c.mean()) + 1.2 * (sd or 0))
    ax_brows.set_ylim(0, min(1.0, top))
    _real_bars(ax_brows, bars)
    ax_brows.set_ylabel("weight")
    ax_brows.set_title(f"brows: std inner/outer/down {_num(stats['brow_inner_up_std'], '{:.3f}')}/"
                       f"{_num(stats['brow_outer_up_std'], '{:.3f}')}/{_num(stats['brow_down_std'], '{:.3f}')}  "
                       f"(real {_num(real('brow_inner_up_std'), '{:.3f}')}/{_num(real('brow_outer_up_std'), '{:.3f}')}/"
                       f"{_num(real('brow_down_std'), '{:.3f}')}; bars at the right: ±1 real std around each mean)",
                       loc="left", fontsize=10)

    # -- head: one real std per axis around the mean (the speaker in the reference) ---------------------
    ang = ms.head_angles_deg(motion)
    bars = []
    for k, (axis, colour) in enumerate(zip(ms.HEAD_AXES, HEAD_COLOURS, strict=True)):
        ax_head.plot(t, ang[:, k], label=f"{axis}", color=colour, linewidth=1.3)
        sd = real(f"head_std_{axis}_deg")
        if sd is not None:
            bars.append((float(ang[:, k].mean()) if len(ang) else 0.0, sd, colour))
    ax_head.axhline(0, color="0.8", linewidth=0.8)
    span = max(4.0, float(np.abs(ang).max()) * 1.15 if len(ang) else 0.0,
               1.3 * max(real(f"head_std_{a}_deg") or 0 for a in ms.HEAD_AXES))
    ax_head.set_ylim(-span, span)
    _real_bars(ax_head, bars)
    ax_head.set_ylabel("degrees")
    sds = "/".join(_num(stats[f"head_std_{a}_deg"]) for a in ms.HEAD_AXES)
    rsds = "/".join(_num(real(f"head_std_{a}_deg"), "{:.1f}") for a in ms.HEAD_AXES)
    ax_head.set_title(f"head: std pitch/yaw/roll {sds}°, range {_num(stats['head_range_deg'], '{:.1f}')}°, jitter "
                      f"{_num(stats['head_jitter_deg'], '{:.3f}')}  (real {rsds}°, range "
                      f"{_num(real('head_range_deg'), '{:.0f}')}°, jitter {_num(real('head_jitter_deg'), '{:.3f}')}; "
                      "bars at the right: ±1 real std)", loc="left", fontsize=10)
    ax_head.set_xlabel("time (s)")
    ax_head.set_xlim(0, duration if duration > 0 else 1.0)

    for ax in axes[1:]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.04, 1.0), fontsize=8, frameon=False)
        ax.grid(True, axis="x", color="0.9")
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=12)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=dpi, format="png")
    plt.close(fig)
    return out
