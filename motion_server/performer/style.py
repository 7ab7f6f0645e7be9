"""Speaker style (per synthetic speaker) and emotion presets (data: ``data/emotions.toml``; the head's
emotional scale and the default blink rate: ``data/calibration.json``)."""

from __future__ import annotations

import tomllib
from dataclasses import astuple, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .calibration import cal, emotion_head_scale
from .channels import expand_name

EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "surprised", "fearful", "disgusted", "contempt")
INTENSITIES: tuple[int, ...] = (1, 2, 3)
EMOTIONS_DATA = Path(__file__).with_name("data") / "emotions.toml"


@dataclass(frozen=True)
class SpeakerStyle:
    """How one speaker performs. ``to_vector()`` lists the fields in this declaration order
    (``STYLE_FIELDS``); the ranges in ``STYLE_RANGES`` are what :func:`sample_speaker_style` draws from."""

    articulation: float = 1.0  # viseme amplitude multiplier
    jaw_emphasis: float = 1.0  # extra gain on jaw channels
    lip_emphasis: float = 1.0  # extra gain on lip channels
    anticipation: float = 1.0  # coarticulation width multiplier (higher: smoother, earlier)
    smile_baseline: float = 0.0  # resting mouthSmile
    frown_baseline: float = 0.0  # resting mouthFrown
    brow_baseline: float = 0.0  # resting browInnerUp
    brow_activity: float = 1.0  # size of prosody-driven brow raises
    head_energy: float = 1.0  # size of head sway and nods
    blink_rate: float = float(cal("blink.rate_per_min"))  # blinks per minute (real speakers' median)
    asymmetry: float = 0.0  # >0: left side of the face moves more, <0: right side
    saccade_rate: float = 1.0  # gaze shifts per second
    gaze_spread: float = 1.0  # size of gaze shifts
    jaw_rest: float = 0.03  # jaw opening at rest

    def to_vector(self) -> np.ndarray:
        return np.asarray(astuple(self), dtype=np.float32)

    @classmethod
    def from_vector(cls, v: np.ndarray) -> SpeakerStyle:
        v = np.asarray(v, dtype=np.float64).reshape(-1)
        if v.size != len(STYLE_FIELDS):
            raise ValueError(f"a SpeakerStyle vector has {len(STYLE_FIELDS)} values {STYLE_FIELDS}, got {v.size}")
        return cls(*(float(x) for x in v))

    def scaled(self, scale: dict[str, float]) -> SpeakerStyle:
        """Fields multiplied by ``scale`` (e.g. an emotion preset's style modifiers)."""
        unknown = set(scale) - set(STYLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown SpeakerStyle field(s) {sorted(unknown)}; known: {STYLE_FIELDS}")
        return replace(self, **{k: getattr(self, k) * float(v) for k, v in scale.items()})


STYLE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(SpeakerStyle))
STYLE_DIM = len(STYLE_FIELDS)
STYLE_RANGES: dict[str, tuple[float, float]] = {
    "articulation": (0.75, 1.3),
    "jaw_emphasis": (0.75, 1.3),
    "lip_emphasis": (0.75, 1.3),
    "anticipation": (0.75, 1.3),
    "smile_baseline": (0.0, 0.2),
    "frown_baseline": (0.0, 0.12),
    "brow_baseline": (0.0, 0.15),
    "brow_activity": (0.3, 1.6),
    "head_energy": (0.4, 1.6),
    "blink_rate": (10.0, 25.0),
    "asymmetry": (-0.15, 0.15),
    "saccade_rate": (0.5, 2.0),
    "gaze_spread": (0.5, 1.5),
    "jaw_rest": (0.0, 0.06),
}


def sample_speaker_style(rng: np.random.Generator) -> SpeakerStyle:
    """A random plausible speaker. Smile and frown baselines rarely coexist: one is usually zero."""
    vals = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in STYLE_RANGES.items()}
    if rng.random() < 0.5:
        vals["frown_baseline"] = 0.0
    else:
        vals["smile_baseline"] = 0.0
    return SpeakerStyle(**vals)


@dataclass(frozen=True)
class EmotionPreset:
    channel_offsets: dict[str, float]  # exact ARKit name -> additive baseline
    style_scale: dict[str, float]  # SpeakerStyle field -> multiplier
    # how the synthesizer speaks it (motion_server.synth.speech.Prosody fields, every one given; only the
    # corpus builder reads it, so the performer keeps it as plain data)
    prosody: dict[str, float]


@lru_cache(maxsize=2)
def _presets(path: str) -> dict[tuple[str, int], EmotionPreset]:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    out: dict[tuple[str, int], EmotionPreset] = {}
    for emo, levels in data.items():
        for lvl, entry in levels.items():
            chans = {n: float(v) for k, v in entry.get("channels", {}).items() for n in expand_name(k)}
            style = {k: float(v) for k, v in entry.get("style", {}).items()}
            if "head_energy" in style:
                raise ValueError(f"{path}: {emo} {lvl} sets head_energy; the head's emotional scale comes from "
                                 "real emotional speech in calibration.json (emotion_head)")
            style["head_energy"] = emotion_head_scale(emo, int(lvl))
            SpeakerStyle().scaled(style)  # validates field names early
            out[(emo, int(lvl))] = EmotionPreset(chans, style, {k: float(v) for k, v in entry["prosody"].items()})
    missing = [(e, i) for e in EMOTIONS for i in INTENSITIES if (e, i) not in out]
    if missing:
        raise ValueError(f"{path} lacks emotion presets {missing}")
    # every preset names every prosody field, so mixing two presets never needs the synthesizer's defaults
    fields_ = set(out[("neutral", 1)].prosody)
    for key, preset in out.items():
        if set(preset.prosody) != fields_:
            raise ValueError(f"{path}: preset {key[0]} {key[1]} has prosody fields {sorted(preset.prosody)}; "
                             f"every preset must give the same ones as neutral 1: {sorted(fields_)}")
    return out


def emotion_preset(name: str, intensity: int = 1) -> EmotionPreset:
    """The preset for ``name`` (one of EMOTIONS) at ``intensity`` 1 (subtle), 2 or 3 (strong)."""
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; choose one of {', '.join(EMOTIONS)}")
    if int(intensity) != intensity or int(intensity) not in INTENSITIES:
        raise ValueError(f"emotion intensity must be 1, 2 or 3, got {intensity!r}")
    return _presets(str(EMOTIONS_DATA))[(name, int(intensity))]


def mix_presets(a: EmotionPreset, b: EmotionPreset, t: float) -> EmotionPreset:
    """(1 - t) * a + t * b, field by field (missing entries count as 0 offsets / 1 multipliers; every
    preset gives every prosody field)."""
    t = float(t)

    def lerp(da: dict[str, float], db: dict[str, float], default: float) -> dict[str, float]:
        return {k: (1 - t) * da.get(k, default) + t * db.get(k, default) for k in sorted(set(da) | set(db))}

    return EmotionPreset(
        lerp(a.channel_offsets, b.channel_offsets, 0.0),
        lerp(a.style_scale, b.style_scale, 1.0),
        {k: (1 - t) * a.prosody[k] + t * b.prosody[k] for k in sorted(a.prosody)},
    )
