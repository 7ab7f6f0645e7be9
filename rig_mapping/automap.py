"""Auto-mapping: pick or build a profile for a character from its shape-key (and bone) names.

Candidates:
- every shipped shape preset, matched against the character's names exactly, then loosely (node
  prefix, case and separators ignored: ``blendShape1.EyeBlink_L`` ~ ``eyeBlink_L``);
- ``auto``: a profile built by normalising names (:mod:`rig_mapping.names`): exact keys; an unsided
  ARKit channel drives both sides when the rig splits it (``browInnerUp_L/_R`` <- ``browInnerUp``); a
  rig shape that merges two sided channels takes their mean (``mouthSmile`` <- smile L/R).

The candidate driving the most character shapes wins; ties go to the one covering more ARKit channels,
then to a named preset over ``auto``. The chosen profile names the character's real shapes (so it can
be saved, edited and applied as is) and the report says what matched and what did not, so a user sees
it before anything is keyed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .arkit import ARKIT_NAMES
from .names import loose, name_key, split_side
from .profile import BoneTarget, Profile, ShapeTarget, list_presets, load_profile

AUTO = "auto"


@dataclass(frozen=True)
class Candidate:
    name: str
    profile: Profile
    shapes_matched: int
    channels_driven: int

    @property
    def score(self) -> tuple[int, int, int]:
        return (self.shapes_matched, self.channels_driven, 0 if self.name == AUTO else 1)


@dataclass(frozen=True)
class AutoMapResult:
    chosen: str
    profile: Profile
    candidates: list[Candidate]
    character_shapes: list[str]
    character_bones: list[str] = field(default_factory=list)
    bones_template: str | None = None

    @property
    def matched(self) -> dict[str, list[str]]:
        """target shape -> the ARKit channels driving it."""
        return self.profile.matched_sources()

    @property
    def matched_bones(self) -> dict[str, list[str]]:
        return {b.name: sorted({c for a in b.axes if a for c, _ in a.sources}) for b in self.profile.bones}

    @property
    def unmatched_shapes(self) -> list[str]:
        used = set(self.profile.shape_names)
        return [n for n in self.character_shapes if n not in used]

    @property
    def unmatched_channels(self) -> list[str]:
        used = self.profile.channels_used()
        return [c for c in ARKIT_NAMES if c not in used]

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen,
            "candidates": {c.name: {"shapes_matched": c.shapes_matched, "channels_driven": c.channels_driven}
                           for c in self.candidates},
            "n_character_shapes": len(self.character_shapes),
            "matched": self.matched,
            "unmatched_shapes": self.unmatched_shapes,
            "unmatched_channels": self.unmatched_channels,
            "bones_template": self.bones_template,
            "matched_bones": self.matched_bones,
            "profile": self.profile.to_dict(),
        }

    def format_report(self) -> str:
        n = len(self.character_shapes)
        lines = [
            f"Chosen profile: {self.chosen}  ({len(self.matched)} of {n} character shapes driven, "
            f"{len(ARKIT_NAMES) - len(self.unmatched_channels)} of {len(ARKIT_NAMES)} ARKit channels used)",
            "Candidates (shapes matched / ARKit channels): "
            + ", ".join(f"{c.name} {c.shapes_matched}/{c.channels_driven}" for c in self.candidates),
            "",
            f"Matched ({len(self.matched)}):",
        ]
        width = max((len(t) for t in self.matched), default=0)
        for target, srcs in self.matched.items():
            lines.append(f"  {target:<{width}}  <- {', '.join(srcs)}")
        if self.profile.bones:
            lines += ["", f"Bones ({self.bones_template}):"]
            lines += [f"  {b}  <- {', '.join(s)}" for b, s in self.matched_bones.items()]
        lines += ["", f"Unmatched character shapes ({len(self.unmatched_shapes)}): "
                  + (", ".join(self.unmatched_shapes) or "none")]
        lines += [f"Unused ARKit channels ({len(self.unmatched_channels)}): "
                  + (", ".join(self.unmatched_channels) or "none")]
        return "\n".join(lines)


def fit_profile(profile: Profile, character_shapes: Sequence[str]) -> Profile:
    """``profile`` restricted to targets the character has, renamed to the character's exact names.

    Exact names match first; a target without an exact match takes the character shape equal to it
    once node prefixes, case and separators are ignored. Each character shape is used once."""
    exact = set(character_shapes)
    by_loose: dict[str, str] = {}
    for n in character_shapes:
        by_loose.setdefault(loose(n), n)
    taken: set[str] = set()
    shapes: list[ShapeTarget] = []
    for t in profile.shapes:
        real = t.name if t.name in exact else by_loose.get(loose(t.name))
        if real is None or real in taken:
            continue
        taken.add(real)
        shapes.append(ShapeTarget(real, t.sources, t.gain, t.offset, t.clamp, t.combine))
    return Profile(profile.name, tuple(shapes), profile.bones, profile.description)


def build_auto_profile(character_shapes: Sequence[str]) -> Profile:
    """A profile from name normalisation alone (see the module docstring)."""
    by_key: dict[str, str] = {}
    for n in character_shapes:
        by_key.setdefault(name_key(n), n)  # a second spelling of the same key stays unmatched
    targets: dict[str, ShapeTarget] = {}
    for ch in ARKIT_NAMES:
        key = name_key(ch)
        base, side = split_side(key)
        if key in by_key:
            real = by_key[key]
            targets.setdefault(real, ShapeTarget(real, ((ch, 1.0),)))
        elif side is None:
            # Rig splits an unsided channel into sides: both sides follow the one channel.
            for s in ("left", "right"):
                real = by_key.get(f"{key} {s}")
                if real is not None:
                    targets.setdefault(real, ShapeTarget(real, ((ch, 1.0),)))
        elif base in by_key and side == "left" and " " in base:
            # Rig merges a sided pair into one shape: it follows the mean of both sides. Directional
            # channels (jawLeft/jawRight, mouthLeft/mouthRight: one-word base) have no merged form.
            other = ch[: -len("Left")] + "Right"
            real = by_key[base]
            targets.setdefault(real, ShapeTarget(real, ((ch, 0.5), (other, 0.5))))
    ordered = [targets[n] for n in character_shapes if n in targets]
    return Profile(AUTO, tuple(ordered), (), "Built by name normalisation from the character's shape keys.")


def _shape_presets() -> list[Profile]:
    return [p for p in (load_profile(n) for n in list_presets()) if p.shapes]


def _bone_templates() -> list[Profile]:
    return [p for p in (load_profile(n) for n in list_presets()) if p.bones and not p.shapes]


def fit_bones(template: Profile, bone_names: Sequence[str]) -> tuple[BoneTarget, ...]:
    """Template bones renamed to the rig's bones found through each bone's ``match`` names."""
    by_key: dict[str, str] = {}
    for n in bone_names:
        by_key.setdefault(name_key(n), n)
    out = []
    for b in template.bones:
        for m in (b.name,) + b.match:
            real = by_key.get(name_key(m))
            if real is not None:
                out.append(BoneTarget(real, b.axes, b.rotation_mode, b.match))
                break
    return tuple(out)


def automap(
    character_shapes: Iterable[str],
    bone_names: Iterable[str] | None = None,
    presets: Sequence[Profile] | None = None,
) -> AutoMapResult:
    """Choose the best profile for a character's shape keys (and head/jaw bones when ``bone_names``
    is given). ``presets`` defaults to every shipped shape preset."""
    names = list(dict.fromkeys(str(n) for n in character_shapes if str(n).strip()))
    candidates = []
    for preset in (_shape_presets() if presets is None else list(presets)):
        fitted = fit_profile(preset, names)
        candidates.append(Candidate(preset.name, fitted, len(fitted.shapes), len(fitted.channels_used())))
    auto = build_auto_profile(names)
    candidates.append(Candidate(AUTO, auto, len(auto.shapes), len(auto.channels_used())))
    candidates.sort(key=lambda c: c.score, reverse=True)
    best = candidates[0]
    profile = Profile(best.name if best.name == AUTO else f"{best.name} (fitted)", best.profile.shapes, (),
                      best.profile.description)

    template_name = None
    bones = list(bone_names or [])
    if bones:
        scored = []
        for t in _bone_templates():
            fitted_b = fit_bones(t, bones)
            scored.append(((len(fitted_b), len(fitted_b) == len(t.bones)), t.name, fitted_b))
        # Most bones found, then a template whose bones were all found (a head-only rig takes the
        # full head pose rather than a head/neck split), then by name for a stable choice.
        scored.sort(key=lambda s: (-s[0][0], not s[0][1], s[1]))
        if scored and scored[0][0][0]:
            _, template_name, fitted_b = scored[0]
            profile = Profile(profile.name, profile.shapes, fitted_b, profile.description)
    return AutoMapResult(best.name, profile, candidates, names, bones, template_name)
