"""Mapping profiles: how the 52 ARKit channels (and the head pose) drive a character's shapes and bones.

A profile is data (TOML or JSON), shipped presets live in ``rig_mapping/profiles/``::

    format = "talkrig-mapping-profile"
    version = 1
    name = "suffix_lr"
    description = "..."

    [shapes]
    eyeBlink_L = "eyeBlinkLeft"                               # one source, weight 1
    browInnerUp_L = { sources = { browInnerUp = 1.0 } }       # same as above, long form
    viseme_aa = { sources = { jawOpen = 0.9, mouthFunnel = -0.3 }, gain = 1.2, offset = 0.0,
                  clamp = [0.0, 1.0], combine = "sum" }      # combine: sum | max | min

    [bones.jaw]                                              # table key = the bone's name in the rig
    rotation_mode = "XYZ"
    match = ["jaw", "jaw master"]                            # optional: name keys automap looks for
    x = { sources = { jawOpen = 1.0 }, gain = 22.0 }          # degrees per unit: jawOpen 1 -> 22 deg
    [bones.head]
    x = { sources = { pitch = 1.0 }, gain = 0.7 }             # head channels are read in degrees

Bone templates may list ``bone_prefixes = ["DEF-", "mixamorig:"]`` (top level): auto-mapping finds a
template bone by its ``match`` names with or without one of those prefixes.

Shape value per frame: ``clip(offset + gain * combine_i(weight_i * source_i), clamp)``; sources are
ARKit channel names (0..1). Bone axis value (degrees, returned in radians):
``clip(offset + gain * sum_i(weight_i * source_i), clamp)``; sources are ARKit channels (0..1) or the
head rotations ``pitch``, ``yaw``, ``roll`` (converted to degrees). Axes x, y, z are the bone's
``rotation_euler`` components; ``rotation_mode`` is passed through for the caller to set.
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .arkit import ARKIT_INDEX, ARKIT_NAMES, NUM_CHANNELS
from .formats._io import check_writable, write_atomic
from .motion import FaceMotion

PROFILE_FORMAT = "talkrig-mapping-profile"
PROFILE_VERSION = 1
ROTATION_SOURCES: tuple[str, ...] = ("pitch", "yaw", "roll")
COMBINE_MODES = ("sum", "max", "min")
ROTATION_MODES = ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX")
_SHAPE_KEYS = {"sources", "gain", "offset", "clamp", "combine"}
_AXIS_KEYS = {"sources", "gain", "offset", "clamp"}
_BONE_KEYS = {"x", "y", "z", "rotation_mode", "match"}
_TOP_KEYS = {"format", "version", "name", "description", "shapes", "bones", "bone_prefixes"}


class ProfileError(ValueError):
    """A profile file or dict is invalid; the message names the entry and what to change."""


Sources = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class ShapeTarget:
    name: str
    sources: Sources
    gain: float = 1.0
    offset: float = 0.0
    clamp: tuple[float, float] | None = (0.0, 1.0)
    combine: str = "sum"


@dataclass(frozen=True)
class BoneAxis:
    sources: Sources
    gain: float = 1.0
    offset: float = 0.0
    clamp: tuple[float, float] | None = None


@dataclass(frozen=True)
class BoneTarget:
    name: str
    axes: tuple[BoneAxis | None, BoneAxis | None, BoneAxis | None]
    rotation_mode: str = "XYZ"
    match: tuple[str, ...] = ()


@dataclass(frozen=True)
class MappedMotion:
    """Curves ready to key: ``shapes[target]`` float32 [T]; ``bones[bone]`` float32 [T, 3] Euler
    radians (rotation_euler x, y, z) with ``rotation_modes[bone]``."""

    fps: float
    n_frames: int
    shapes: dict[str, np.ndarray]
    bones: dict[str, np.ndarray] = field(default_factory=dict)
    rotation_modes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Profile:
    name: str
    shapes: tuple[ShapeTarget, ...]
    bones: tuple[BoneTarget, ...] = ()
    description: str = ""
    # Rig prefixes (``DEF-``, ``mixamorig:``) auto-mapping ignores when it looks for a bone's ``match``
    # names; only bone templates use it, so a rig's naming convention is data, not code.
    bone_prefixes: tuple[str, ...] = ()

    # -- queries -------------------------------------------------------------------------------
    @property
    def shape_names(self) -> list[str]:
        return [s.name for s in self.shapes]

    @property
    def bone_names(self) -> list[str]:
        return [b.name for b in self.bones]

    def channels_used(self) -> set[str]:
        """ARKit channels that drive at least one shape or bone (with a non-zero weight)."""
        used = {c for s in self.shapes for c, w in s.sources if w != 0}
        used |= {c for b in self.bones for a in b.axes if a for c, w in a.sources if w != 0}
        return used & set(ARKIT_NAMES)

    def matched_sources(self) -> dict[str, list[str]]:
        return {s.name: [c for c, _ in s.sources] for s in self.shapes}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Profile):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # -- derived arrays (built once) ---------------------------------------------------------------
    @cached_property
    def _shape_plan(self) -> tuple:
        sums = [i for i, s in enumerate(self.shapes) if s.combine == "sum"]
        mat = np.zeros((NUM_CHANNELS, len(sums)), np.float32)
        for k, i in enumerate(sums):
            for c, w in self.shapes[i].sources:
                mat[ARKIT_INDEX[c], k] += w
        gain = np.array([self.shapes[i].gain for i in sums], np.float32)
        offset = np.array([self.shapes[i].offset for i in sums], np.float32)
        lo = np.array([-np.inf if self.shapes[i].clamp is None else self.shapes[i].clamp[0] for i in sums], np.float32)
        hi = np.array([np.inf if self.shapes[i].clamp is None else self.shapes[i].clamp[1] for i in sums], np.float32)
        return sums, mat, gain, offset, lo, hi

    def shape_matrix(self) -> np.ndarray:
        """[52, K] weights of the ``combine = "sum"`` shape targets (in profile order)."""
        return self._shape_plan[1].copy()

    @cached_property
    def _bone_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rows = list(ARKIT_NAMES) + list(ROTATION_SOURCES)
        n_out = 3 * len(self.bones)
        mat = np.zeros((len(rows), n_out), np.float64)
        gain = np.zeros(n_out)
        offset = np.zeros(n_out)
        lo = np.full(n_out, -np.inf)
        hi = np.full(n_out, np.inf)
        for b, bone in enumerate(self.bones):
            for a, axis in enumerate(bone.axes):
                if axis is None:
                    continue
                k = 3 * b + a
                for c, w in axis.sources:
                    mat[rows.index(c), k] += w
                gain[k], offset[k] = axis.gain, axis.offset
                if axis.clamp is not None:
                    lo[k], hi[k] = axis.clamp
        return mat, gain, offset, lo, hi

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"format": PROFILE_FORMAT, "version": PROFILE_VERSION, "name": self.name}
        if self.description:
            d["description"] = self.description
        if self.bone_prefixes:
            d["bone_prefixes"] = list(self.bone_prefixes)
        d["shapes"] = {s.name: _shape_to_dict(s) for s in self.shapes}
        if self.bones:
            d["bones"] = {b.name: _bone_to_dict(b) for b in self.bones}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_toml(self) -> str:
        return _dump_toml(self.to_dict())

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write as TOML or JSON by extension; refuses to replace a file unless ``overwrite``."""
        p = Path(path)
        if p.suffix.lower() not in (".toml", ".json"):
            raise ProfileError(f"{p}: profiles are saved as .toml or .json, not {p.suffix or 'no extension'!r}")
        check_writable(p, overwrite)
        text = self.to_toml() if p.suffix.lower() == ".toml" else self.to_json() + "\n"
        write_atomic(p, text.encode("utf-8"))
        return p

    def merged(self, other: Profile, name: str | None = None) -> Profile:
        """This profile's shapes and bones plus ``other``'s (``other`` wins on a name clash)."""
        shapes = {s.name: s for s in self.shapes} | {s.name: s for s in other.shapes}
        bones = {b.name: b for b in self.bones} | {b.name: b for b in other.bones}
        return Profile(name or f"{self.name}+{other.name}", tuple(shapes.values()), tuple(bones.values()),
                       self.description)

    def restricted(self, shape_names: Iterable[str], bone_names: Iterable[str] = ()) -> Profile:
        """Only the named targets (e.g. those a character actually has)."""
        keep, keep_b = set(shape_names), set(bone_names)
        return Profile(self.name, tuple(s for s in self.shapes if s.name in keep),
                       tuple(b for b in self.bones if b.name in keep_b), self.description)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<profile>") -> Profile:
        return _parse_profile(d, source)


# -- applying ----------------------------------------------------------------------------------------

def apply_profile(motion: FaceMotion, profile: Profile) -> MappedMotion:
    """Evaluate every shape and bone target of ``profile`` on ``motion`` (vectorised: one [T,52]x[52,K]
    product for the summed shape targets, one for all bone axes)."""
    w = motion.weights
    shapes: dict[str, np.ndarray] = {}
    sums, mat, gain, offset, lo, hi = profile._shape_plan
    if sums:
        out = np.clip((w @ mat) * gain + offset, lo, hi).astype(np.float32)
        for k, i in enumerate(sums):
            shapes[profile.shapes[i].name] = out[:, k]
    for s in profile.shapes:
        if s.combine == "sum":
            continue
        vals = w[:, [ARKIT_INDEX[c] for c, _ in s.sources]] * np.array([wt for _, wt in s.sources], np.float32)
        red = vals.max(axis=1) if s.combine == "max" else vals.min(axis=1)
        v = red * s.gain + s.offset
        if s.clamp is not None:
            v = np.clip(v, *s.clamp)
        shapes[s.name] = v.astype(np.float32)
    shapes = {s.name: shapes[s.name] for s in profile.shapes}  # profile order

    bones: dict[str, np.ndarray] = {}
    if profile.bones:
        bmat, bgain, boff, blo, bhi = profile._bone_plan
        x = np.concatenate([w.astype(np.float64), np.degrees(motion.head[:, :3].astype(np.float64))], axis=1)
        deg = np.clip((x @ bmat) * bgain + boff, blo, bhi)
        rad = np.radians(deg).astype(np.float32)
        for b, bone in enumerate(profile.bones):
            bones[bone.name] = np.ascontiguousarray(rad[:, 3 * b:3 * b + 3])
    return MappedMotion(fps=motion.fps, n_frames=motion.n_frames, shapes=shapes, bones=bones,
                        rotation_modes={b.name: b.rotation_mode for b in profile.bones})


def invert_profile(shapes: Mapping[str, np.ndarray], bones: Mapping[str, np.ndarray], profile: Profile,
                   fps: float) -> FaceMotion:
    """Recover ARKit weights + head pose from a character's curves: ``shapes[name]`` [T] and
    ``bones[name]`` [T, 3] Euler radians in the profile's rotation modes (the inverse of
    :func:`apply_profile`, e.g. to read an existing take back as a style reference).

    The profile is treated as a black box that is affine per frame: probing it with a neutral frame and
    one frame per channel gives its matrix, and least squares inverts it (fan-out targets are averaged,
    gains divided out). Channels the profile does not drive come back as zero.
    """
    n_w, n_h = NUM_CHANNELS, 3
    amp_w, amp_h = 0.25, 0.05  # small probes: stay clear of clamps and of rotation non-linearity
    w = np.zeros((1 + n_w + n_h, n_w), np.float32)
    h = np.zeros((1 + n_w + n_h, 6), np.float32)
    for i in range(n_w):
        w[1 + i, i] = amp_w
    for j in range(n_h):
        h[1 + n_w + j, j] = amp_h
    probe = apply_profile(FaceMotion.from_arrays(w, h, fps=fps), profile)

    cols: list[tuple[str, str, int]] = []  # (kind, name, component)
    rows: list[np.ndarray] = []
    for name, v in probe.shapes.items():
        if name in shapes:
            cols.append(("shape", name, 0))
            rows.append(np.asarray(v, np.float64))
    for bone, arr in probe.bones.items():
        if bone in bones:
            for k in range(3):
                cols.append(("bone", bone, k))
                rows.append(np.asarray(arr[:, k], np.float64))
    T = next((len(v) for v in (*shapes.values(), *bones.values())), 0)
    if not cols:
        return FaceMotion.neutral(T, fps=fps)
    P = np.stack(rows, axis=1)  # [probes, outputs]
    offset = P[0]
    J = np.zeros((n_w + n_h, P.shape[1]))
    J[:n_w] = (P[1 : 1 + n_w] - offset) / amp_w
    J[n_w:] = (P[1 + n_w :] - offset) / amp_h
    Y = np.stack([_observed(shapes, bones, kind, name, k) for kind, name, k in cols], axis=1) - offset  # [T, outputs]
    live = np.abs(J).sum(axis=1) > 1e-9  # inputs the profile actually uses
    X = np.zeros((T, n_w + n_h))
    if live.any():
        sol, *_ = np.linalg.lstsq(J[live].T, Y.T, rcond=None)
        X[:, live] = sol.T
    weights = np.clip(X[:, :n_w], 0.0, 1.0)
    head = np.zeros((T, 6))
    head[:, :3] = X[:, n_w:]
    return FaceMotion.from_arrays(weights, head, fps=fps)


def _observed(shapes: Mapping[str, np.ndarray], bones: Mapping[str, np.ndarray], kind: str, name: str,
              k: int) -> np.ndarray:
    if kind == "shape":
        return np.asarray(shapes[name], np.float64)
    return np.asarray(bones[name][:, k], np.float64)


# -- loading -------------------------------------------------------------------------------------------

def presets_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("profiles")))


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def load_profile(name_or_path: str | Path) -> Profile:
    """A shipped preset by name (``"arkit"``) or a ``.toml``/``.json`` file path."""
    s = str(name_or_path)
    p = Path(s)
    if p.suffix.lower() in (".toml", ".json") or p.exists():
        if not p.is_file():
            raise FileNotFoundError(f"profile file {p} not found")
        return load_profile_file(p)
    preset = presets_dir() / f"{s}.toml"
    if not preset.is_file():
        raise ProfileError(f"no preset named {s!r}; presets: {', '.join(list_presets())} (or give a .toml/.json path)")
    return load_profile_file(preset)


def load_profile_file(path: str | Path) -> Profile:
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    try:
        d = tomllib.loads(text) if p.suffix.lower() == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ProfileError(f"{p}: not valid {p.suffix[1:].upper()} ({e})") from None
    return _parse_profile(d, str(p))


# -- parsing & validation --------------------------------------------------------------------------------

def _fail(source: str, where: str, msg: str) -> ProfileError:
    return ProfileError(f"{source}: {where}: {msg}")


def _unknown_keys(got: Iterable[str], allowed: set[str], source: str, where: str) -> None:
    extra = sorted(set(got) - allowed)
    if extra:
        hint = difflib.get_close_matches(extra[0], sorted(allowed), n=1)
        tip = f" (did you mean {hint[0]!r}?)" if hint else f"; allowed: {', '.join(sorted(allowed))}"
        raise _fail(source, where, f"unknown key {extra[0]!r}{tip}")


def _number(v: Any, source: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _fail(source, where, f"must be a finite number, got {v!r}")
    return float(v)


def _parse_sources(v: Any, allowed: tuple[str, ...], source: str, where: str) -> Sources:
    if isinstance(v, str):
        items = [(v, 1.0)]
    elif isinstance(v, list):
        items = [(x, 1.0) for x in v]
    elif isinstance(v, Mapping):
        items = list(v.items())
    else:
        raise _fail(source, where, "sources must be a channel name, a list of names or a {name = weight} table")
    if not items:
        raise _fail(source, where, "needs at least one source channel")
    out = []
    for name, w in items:
        if not isinstance(name, str) or name not in allowed:
            hint = difflib.get_close_matches(str(name), allowed, n=1)
            tip = f"did you mean {hint[0]!r}?" if hint else "use an ARKit name such as 'jawOpen'"
            raise _fail(source, where, f"unknown source channel {name!r}; {tip}")
        out.append((name, _number(w, source, f"{where}.{name}")))
    return tuple(out)


def _parse_clamp(v: Any, source: str, where: str) -> tuple[float, float] | None:
    if v is False or v is None:
        return None
    if not isinstance(v, list) or len(v) != 2:
        raise _fail(source, where, f"clamp must be [low, high] or false, got {v!r}")
    lo, hi = (_number(x, source, where) for x in v)
    if lo > hi:
        raise _fail(source, where, f"clamp low {lo} is above high {hi}")
    return lo, hi


def _parse_shape(name: str, v: Any, source: str) -> ShapeTarget:
    where = f"shapes.{name}"
    if isinstance(v, (str, list)):
        return ShapeTarget(name, _parse_sources(v, ARKIT_NAMES, source, where))
    if not isinstance(v, Mapping):
        raise _fail(source, where, "must be a channel name or a table with 'sources'")
    _unknown_keys(v.keys(), _SHAPE_KEYS, source, where)
    if "sources" not in v:
        raise _fail(source, where, "missing 'sources' (the ARKit channel(s) that drive this shape)")
    combine = v.get("combine", "sum")
    if combine not in COMBINE_MODES:
        raise _fail(source, where, f"combine must be one of {COMBINE_MODES}, got {combine!r}")
    return ShapeTarget(
        name=name,
        sources=_parse_sources(v["sources"], ARKIT_NAMES, source, where),
        gain=_number(v.get("gain", 1.0), source, f"{where}.gain"),
        offset=_number(v.get("offset", 0.0), source, f"{where}.offset"),
        clamp=_parse_clamp(v.get("clamp", [0.0, 1.0]), source, f"{where}.clamp"),
        combine=combine,
    )


def _parse_bone(name: str, v: Any, source: str) -> BoneTarget:
    where = f"bones.{name}"
    if not isinstance(v, Mapping):
        raise _fail(source, where, "must be a table with x / y / z axis entries")
    _unknown_keys(v.keys(), _BONE_KEYS, source, where)
    axes: list[BoneAxis | None] = []
    for ax in ("x", "y", "z"):
        a = v.get(ax)
        if a is None:
            axes.append(None)
            continue
        aw = f"{where}.{ax}"
        if not isinstance(a, Mapping) or "sources" not in a:
            raise _fail(source, aw, "must be a table with 'sources' (and gain in degrees per unit)")
        _unknown_keys(a.keys(), _AXIS_KEYS, source, aw)
        axes.append(BoneAxis(
            sources=_parse_sources(a["sources"], ARKIT_NAMES + ROTATION_SOURCES, source, aw),
            gain=_number(a.get("gain", 1.0), source, f"{aw}.gain"),
            offset=_number(a.get("offset", 0.0), source, f"{aw}.offset"),
            clamp=_parse_clamp(a.get("clamp"), source, f"{aw}.clamp"),
        ))
    if all(a is None for a in axes):
        raise _fail(source, where, "drives no axis; give at least one of x, y, z")
    mode = v.get("rotation_mode", "XYZ")
    if mode not in ROTATION_MODES:
        raise _fail(source, where, f"rotation_mode must be one of {ROTATION_MODES}, got {mode!r}")
    match = v.get("match", [])
    if not isinstance(match, list) or not all(isinstance(m, str) for m in match):
        raise _fail(source, f"{where}.match", "must be a list of strings")
    return BoneTarget(name, (axes[0], axes[1], axes[2]), mode, tuple(match))


def _parse_profile(d: Any, source: str) -> Profile:
    if not isinstance(d, Mapping):
        raise ProfileError(f"{source}: a profile must be a table/object at the top level")
    _unknown_keys(d.keys(), _TOP_KEYS, source, "top level")
    fmt = d.get("format", PROFILE_FORMAT)
    if fmt != PROFILE_FORMAT:
        raise _fail(source, "format", f"expected {PROFILE_FORMAT!r}, got {fmt!r}")
    version = d.get("version", PROFILE_VERSION)
    if not isinstance(version, int) or version > PROFILE_VERSION:
        raise _fail(source, "version", f"this TalkRig reads profile version <= {PROFILE_VERSION}, got {version!r}")
    name = d.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        raise _fail(source, "name", "must be a non-empty string")
    shapes_d = d.get("shapes", {})
    bones_d = d.get("bones", {})
    if not isinstance(shapes_d, Mapping) or not isinstance(bones_d, Mapping):
        raise _fail(source, "shapes/bones", "must be tables")
    if not shapes_d and not bones_d:
        raise _fail(source, "shapes", "the profile maps nothing; add [shapes] or [bones] entries")
    shapes = tuple(_parse_shape(str(k), v, source) for k, v in shapes_d.items())
    bones = tuple(_parse_bone(str(k), v, source) for k, v in bones_d.items())
    desc = d.get("description", "")
    if not isinstance(desc, str):
        raise _fail(source, "description", "must be a string")
    prefixes = d.get("bone_prefixes", [])
    if not isinstance(prefixes, list) or not all(isinstance(x, str) and x for x in prefixes):
        raise _fail(source, "bone_prefixes", "must be a list of non-empty strings")
    return Profile(name=name, shapes=shapes, bones=bones, description=desc, bone_prefixes=tuple(prefixes))


# -- writing -------------------------------------------------------------------------------------------

def _sources_to_dict(sources: Sources) -> dict[str, float]:
    out: dict[str, float] = {}
    for c, w in sources:
        out[c] = out.get(c, 0.0) + w
    return out


def _shape_to_dict(s: ShapeTarget) -> str | dict[str, Any]:
    if (len(s.sources) == 1 and s.sources[0][1] == 1.0 and s.gain == 1.0 and s.offset == 0.0
            and s.clamp == (0.0, 1.0) and s.combine == "sum"):
        return s.sources[0][0]  # the short form a person would write
    d: dict[str, Any] = {"sources": _sources_to_dict(s.sources)}
    if s.gain != 1.0:
        d["gain"] = s.gain
    if s.offset != 0.0:
        d["offset"] = s.offset
    if s.clamp != (0.0, 1.0):
        d["clamp"] = False if s.clamp is None else list(s.clamp)
    if s.combine != "sum":
        d["combine"] = s.combine
    return d


def _bone_to_dict(b: BoneTarget) -> dict[str, Any]:
    d: dict[str, Any] = {"rotation_mode": b.rotation_mode}
    if b.match:
        d["match"] = list(b.match)
    for ax, a in zip("xyz", b.axes, strict=True):
        if a is None:
            continue
        e: dict[str, Any] = {"sources": _sources_to_dict(a.sources), "gain": a.gain}
        if a.offset:
            e["offset"] = a.offset
        if a.clamp is not None:
            e["clamp"] = list(a.clamp)
        d[ax] = e
    return d


def _toml_key(k: str) -> str:
    bare = k and all(ch.isascii() and (ch.isalnum() or ch in "_-") for ch in k)
    return k if bare else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(float(v)) if isinstance(v, float) else str(v)
    if isinstance(v, str):
        return json.dumps(v)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _dump_toml(d: Mapping[str, Any]) -> str:
    """Just enough TOML for the profile schema: top-level scalars, [shapes], [bones.<name>]."""
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, Mapping)]
    if "shapes" in d:
        lines += ["", "[shapes]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in d["shapes"].items()]
    for bone, entry in d.get("bones", {}).items():
        lines += ["", f"[bones.{_toml_key(bone)}]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"
