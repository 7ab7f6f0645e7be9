"""Auto-mapping: pick or build a profile for a character from its shape-key (and bone) names.

Candidates:
- every shipped shape preset, matched against the character's names exactly, then loosely (node
  prefix, case and separators ignored: ``blendShape1.EyeBlink_L`` ~ ``eyeBlink_L``);
- ``auto``: a profile built by normalising names (:mod:`rig_mapping.names`): exact keys; an unsided
  ARKit channel drives both sides when the rig splits it (``browInnerUp_L/_R`` <- ``browInnerUp``); a
  rig shape that merges two sided channels takes their mean (``mouthSmile`` <- smile L/R).

The candidate driving the most character shapes wins; ties go to the one covering more ARKit channels,
then to a named preset over ``auto``.

Bones come from the bone templates (``bones_*.toml``): each template bone is found in the rig through
its ``match`` names, with or without one of the template's ``bone_prefixes``. Jaw policy: a bone driven
only by face channels (the jaw) is left out when one of those channels already drives a shape key
(a ``jawOpen`` shape key opens the mouth; keying the jaw bone too would open it twice as far). The head
and neck bones are always kept: no shape key carries the head pose.

:func:`map_rig` is the one entry point ``talkrig map-report`` and the Blender add-on both call, so the
report a user reads is what gets keyed. The chosen profile names the character's real shapes (so it can
be saved, edited and applied as is) and the report says what matched and what did not, so a user sees
it before anything is keyed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .arkit import ARKIT_NAMES
from .names import loose, name_key, split_side
from .profile import (
    ROTATION_SOURCES,
    BoneTarget,
    Profile,
    ShapeTarget,
    list_presets,
    load_profile,
)

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
    bone_roles: dict[str, str] = field(default_factory=dict)  # template role ("head") -> driven rig bone
    skipped_bones: dict[str, str] = field(default_factory=dict)  # rig bone found but not driven -> why

    def channel_targets(self) -> dict[str, list[str]]:
        """ARKit channel -> shape keys and ``bone:<name>`` entries it drives (see :func:`channel_targets`)."""
        return channel_targets(self.profile)

    def head_targets(self) -> dict[str, list[str]]:
        """Head rotation (pitch/yaw/roll) -> the bones it turns."""
        return head_targets(self.profile)

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
            "bone_roles": self.bone_roles,
            "skipped_bones": self.skipped_bones,
            "channel_targets": self.channel_targets(),
            "head_targets": self.head_targets(),
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
        if self.skipped_bones:
            lines += ["", "Bones found but not driven:"]
            lines += [f"  {b}  ({why})" for b, why in self.skipped_bones.items()]
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


@functools.lru_cache(maxsize=1)
def _shipped_presets() -> tuple[Profile, ...]:
    """Every shipped preset, parsed once: they are package data, fixed while the process runs, and
    automap runs on every panel redraw in Blender (the operators' polls find the character), where
    parsing 16 TOML files each time cost tens of milliseconds. Profiles are frozen: sharing is safe."""
    return tuple(load_profile(n) for n in list_presets())


def _shape_presets() -> list[Profile]:
    return [p for p in _shipped_presets() if p.shapes]


def _bone_templates() -> list[Profile]:
    return [p for p in _shipped_presets() if p.bones and not p.shapes]


def _bone_keys(bone_names: Sequence[str], prefixes: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """name key -> rig bone, for the names as they are and with one rig prefix removed."""
    exact: dict[str, str] = {}
    bare: dict[str, str] = {}
    for n in bone_names:
        exact.setdefault(name_key(n), n)
        for p in prefixes:
            if n.lower().startswith(p.lower()) and len(n) > len(p):
                bare.setdefault(name_key(n[len(p):]), n)
                break
    return exact, bare


def _fit_bone_roles(template: Profile, bone_names: Sequence[str]) -> list[tuple[str, BoneTarget]]:
    """(template bone name = role, template bone renamed to the rig bone) for each bone found."""
    exact, bare = _bone_keys(bone_names, template.bone_prefixes)
    out: list[tuple[str, BoneTarget]] = []
    taken: set[str] = set()
    for b in template.bones:
        keys = [name_key(m) for m in (b.name,) + b.match]
        # A name as written beats one found only after removing a prefix (``head`` over ``DEF-head``).
        real = next((r for r in (exact.get(k) for k in keys) if r is not None and r not in taken), None)
        if real is None:
            real = next((r for r in (bare.get(k) for k in keys) if r is not None and r not in taken), None)
        if real is not None:
            taken.add(real)
            out.append((b.name, BoneTarget(real, b.axes, b.rotation_mode, b.match)))
    return out


def fit_bones(template: Profile, bone_names: Sequence[str]) -> tuple[BoneTarget, ...]:
    """Template bones renamed to the rig's bones found through each bone's ``match`` names (with or
    without one of the template's ``bone_prefixes``)."""
    return tuple(b for _, b in _fit_bone_roles(template, bone_names))


def channel_targets(profile: Profile) -> dict[str, list[str]]:
    """ARKit channel -> the shape keys (and ``bone:<name>`` entries) it drives under ``profile``."""
    arkit = set(ARKIT_NAMES)
    out: dict[str, list[str]] = {}
    for s in profile.shapes:
        for ch, w in s.sources:
            if w != 0 and ch in arkit and s.name not in out.get(ch, []):
                out.setdefault(ch, []).append(s.name)
    for b in profile.bones:
        for axis in b.axes:
            for ch, w in (axis.sources if axis else ()):
                if w != 0 and ch in arkit and f"bone:{b.name}" not in out.get(ch, []):
                    out.setdefault(ch, []).append(f"bone:{b.name}")
    return out


def head_targets(profile: Profile) -> dict[str, list[str]]:
    """Head rotation channel (pitch/yaw/roll) -> the bones it turns."""
    out: dict[str, list[str]] = {}
    for b in profile.bones:
        for axis in b.axes:
            for ch, w in (axis.sources if axis else ()):
                if w != 0 and ch in ROTATION_SOURCES and b.name not in out.get(ch, []):
                    out.setdefault(ch, []).append(b.name)
    return out


def _jaw_policy(shapes: Sequence[ShapeTarget], bones: Sequence[tuple[str, BoneTarget]]
                ) -> tuple[list[tuple[str, BoneTarget]], dict[str, str]]:
    """Drop face-channel bones whose channel a shape key already carries (see the module docstring)."""
    shape_channels = {c for s in shapes for c, w in s.sources if w != 0}
    arkit = set(ARKIT_NAMES)
    kept, skipped = [], {}
    for role, b in bones:
        srcs = {c for a in b.axes if a for c, w in a.sources if w != 0}
        carried = sorted(srcs & shape_channels)
        if srcs and srcs <= arkit and carried:
            skipped[b.name] = f"{role} bone: {', '.join(carried)} already drives a shape key"
        else:
            kept.append((role, b))
    return kept, skipped


def _unique_names(names: Iterable[str]) -> list[str]:
    """Names in first-seen order, blanks and repeats dropped."""
    return list(dict.fromkeys(str(n) for n in names if str(n).strip()))


def _choose_bone_template(bone_names: Sequence[str]) -> tuple[str | None, list[tuple[str, BoneTarget]]]:
    """The bone template that fits the rig best and its (role, renamed bone) pairs; (None, []) if none."""
    scored = []
    for t in _bone_templates():
        found = _fit_bone_roles(t, bone_names)
        scored.append(((len(found), len(found) == len(t.bones)), t.name, found))
    # Most bones found, then a template whose bones were all found (a head-only rig takes the
    # full head pose rather than a head/neck split), then by name for a stable choice.
    scored.sort(key=lambda s: (-s[0][0], not s[0][1], s[1]))
    if not scored or not scored[0][0][0]:
        return None, []
    return scored[0][1], scored[0][2]


def find_bones(bone_names: Iterable[str]) -> dict[str, str]:
    """role (``head``, ``neck``, ``jaw``) -> the rig bone the best bone template finds for it, before
    the jaw policy (so a jaw bone is listed even when a jawOpen shape key leaves it undriven)."""
    _, found = _choose_bone_template([str(b) for b in bone_names])
    return {role: b.name for role, b in found}


def automap(
    character_shapes: Iterable[str],
    bone_names: Iterable[str] | None = None,
    presets: Sequence[Profile] | None = None,
) -> AutoMapResult:
    """Choose the best profile for a character's shape keys (and head/jaw bones when ``bone_names``
    is given). ``presets`` defaults to every shipped shape preset."""
    names = _unique_names(character_shapes)
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
    bones = _unique_names(bone_names or [])
    roles: dict[str, str] = {}
    skipped: dict[str, str] = {}
    if bones:
        template_name, found = _choose_bone_template(bones)
        if found:
            kept, skipped = _jaw_policy(profile.shapes, found)
            roles = {role: b.name for role, b in kept}
            profile = Profile(profile.name, profile.shapes, tuple(b for _, b in kept), profile.description)
    return AutoMapResult(best.name, profile, candidates, names, bones, template_name, roles, skipped)


def map_rig(
    character_shapes: Iterable[str],
    bone_names: Iterable[str] | None = None,
    profile: Profile | str | None = None,
) -> AutoMapResult:
    """The mapping for one character: shape-key names, armature bone names, and optionally a profile
    (a :class:`Profile`, a preset name or a .toml/.json path). Without one, :func:`automap` decides
    (with the jaw policy). A given profile is used as written: fitted to the character's names
    (shapes loosely, bones through their ``match`` names), no bone left out."""
    if profile is None:
        return automap(character_shapes, bone_names)
    names = _unique_names(character_shapes)
    bones = _unique_names(bone_names or [])
    base = profile if isinstance(profile, Profile) else load_profile(profile)
    fitted = fit_profile(base, names)
    found = _fit_bone_roles(base, bones) if bones else []
    prof = Profile(fitted.name, fitted.shapes, tuple(b for _, b in found), fitted.description)
    cand = Candidate(base.name, prof, len(prof.shapes), len(prof.channels_used()))
    return AutoMapResult(base.name, prof, [cand], names, bones, base.name if found else None,
                         {role: b.name for role, b in found})
