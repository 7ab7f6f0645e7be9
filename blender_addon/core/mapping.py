"""The add-on's single doorway to rig_mapping's profiles (automap, apply, report, inverse).

Everything Blender-side speaks in plain dicts of curves:
- ``Curves.shapes``: shape-key name -> float array [T]
- ``Curves.bones``: bone name -> [T, 3] Euler radians (bone-local) in ``Curves.rotation_modes[bone]`` order
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig_mapping import arkit
from rig_mapping import profile as rig_profile  # `profile` names a parameter here
from rig_mapping.automap import find_bones as _find_bones
from rig_mapping.automap import map_rig as _map_rig

ARKIT_NAMES: tuple[str, ...] = arkit.ARKIT_NAMES
HEAD_CHANNELS: tuple[str, ...] = arkit.HEAD_CHANNELS


@dataclass
class Curves:
    shapes: dict[str, np.ndarray] = field(default_factory=dict)
    bones: dict[str, np.ndarray] = field(default_factory=dict)
    rotation_modes: dict[str, str] = field(default_factory=dict)


@dataclass
class MappingReport:
    """What a profile does on one character, shown to the user before anything is written."""

    matched: dict[str, list[str]]  # ARKit channel -> shape keys / "bone:<name>" it drives
    unmatched: list[str]  # ARKit channels with no target on this character
    unused: list[str]  # shape keys nothing drives
    bones: dict[str, str]  # role -> bone the mapping drives
    head_targets: dict[str, list[str]] = field(default_factory=dict)  # head channel -> bones
    profile_name: str = "auto"
    skipped_bones: dict[str, str] = field(default_factory=dict)  # bone found but not driven -> why

    @property
    def n_matched(self) -> int:
        return len(self.matched)

    def summary(self) -> str:
        s = f"{self.n_matched}/{len(ARKIT_NAMES)} ARKit channels matched ({self.profile_name})"
        if self.bones:
            s += "; bones " + ", ".join(f"{r}={b}" for r, b in self.bones.items())
        return s

    def lines(self) -> list[str]:
        out = [self.summary()]
        if self.unmatched:
            out.append("unmatched: " + ", ".join(self.unmatched))
        if self.unused:
            out.append("unused shape keys: " + ", ".join(self.unused))
        out += [f"bone {b} not driven: {why}" for b, why in self.skipped_bones.items()]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile_name,
            "matched": self.matched,
            "unmatched": self.unmatched,
            "unused": self.unused,
            "bones": self.bones,
            "head_targets": self.head_targets,
            "skipped_bones": self.skipped_bones,
        }


# --- rig_mapping calls ------------------------------------------------------------------------------
# Every mapping decision (which preset, which bones, the jaw policy, fitting a given profile) is
# rig_mapping's: the add-on passes the names it collected from Blender and applies what comes back, so
# ``talkrig map-report`` on the same names says exactly what gets keyed here.


def map_rig(shape_names: list[str], bone_names: list[str], profile: Any | None = None) -> Any:
    """rig_mapping's mapping (an ``AutoMapResult``) for these shape keys and armature bone names;
    ``profile`` (a loaded profile) is fitted to the rig, None chooses automatically."""
    return _map_rig(list(shape_names), list(bone_names), profile)


def auto_profile(shape_names: list[str], bone_names: list[str]) -> Any:
    """The automatic profile for these shape keys and armature bones (see :func:`map_rig`)."""
    return map_rig(shape_names, bone_names).profile


def fitted_profile(shape_names: list[str], bone_names: list[str], profile: Any | None = None) -> Any:
    """The profile to key: ``profile`` fitted to the rig's names, or the automatic one."""
    return map_rig(shape_names, bone_names, profile).profile


def find_bones(bone_names: list[str]) -> dict[str, str]:
    """role ("head", "neck", "jaw") -> armature bone, as rig_mapping's bone templates find them."""
    return _find_bones(list(bone_names))


def count_matches(shape_names: list[str]) -> int:
    """How many ARKit channels an automatic profile finds among ``shape_names``."""
    return len(map_rig(shape_names, []).channel_targets())


def load_profile(path: str | Path) -> Any:
    return rig_profile.load_profile(path)


def save_profile(profile: Any, path: str | Path, overwrite: bool = False) -> Path:
    """Write as .toml or .json (by extension); refuses to replace a file unless ``overwrite``."""
    return profile.save(path, overwrite=overwrite)


def evaluate(motion: Any, profile: Any, shape_names: list[str]) -> Curves:
    """Curves for a fitted profile (from :func:`fitted_profile`), restricted to the rig's shape keys."""
    out = rig_profile.apply_profile(motion, profile)
    have = set(shape_names)
    return Curves(
        shapes={k: np.asarray(v, np.float32) for k, v in out.shapes.items() if k in have},
        bones={b: np.asarray(a, np.float64) for b, a in out.bones.items()},
        rotation_modes=dict(out.rotation_modes),
    )


def report(shape_names: list[str], bone_names: list[str], profile: Any | None = None) -> MappingReport:
    res = map_rig(shape_names, bone_names, profile)
    matched = res.channel_targets()
    driven = {n for names in matched.values() for n in names}
    return MappingReport(
        matched=matched,
        unmatched=[c for c in ARKIT_NAMES if c not in matched],
        unused=[n for n in res.character_shapes if n not in driven],
        bones=dict(res.bone_roles),
        head_targets=res.head_targets(),
        profile_name=res.profile.name,
        skipped_bones=dict(res.skipped_bones),
    )


# --- inverse: curves on the character -> FaceMotion --------------------------------------------------


def invert(curves: Curves, profile: Any, fps: float) -> Any:
    """Recover ARKit weights + head pose from the character's curves (rig_mapping's ``invert_profile``)."""
    return rig_profile.invert_profile(curves.shapes, curves.bones, profile, fps)
