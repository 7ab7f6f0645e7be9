"""Shape-name normalisation: one comparable key for the many spellings of the same ARKit shape.

``eyeBlinkLeft``, ``EyeBlinkLeft``, ``eyeBlink_L``, ``eye_blink_l``, ``eyeBlink.L``,
``blendShape2.eyeBlink_L`` and ``AK_09_EyeBlinkLeft`` all give the key ``"eye blink left"``.
Side words (L/R/Left/Right) move to the end, so ``L_eyeBlink`` matches too.
"""

from __future__ import annotations

import functools
import re

from .arkit import ARKIT_NAMES

_SIDE_WORDS = {"l": "left", "left": "left", "r": "right", "right": "right"}
# Numbered or vendor prefixes in front of the shape name (Rocketbox ``AK_25_``, CC3 ``A25_``,
# Maya blend-shape node names are handled by the dot rule below).
_PREFIX = re.compile(r"^(?:AK_?\d+_|A\d{2}_|ARKit_|arkit_)")
_SEPARATORS = re.compile(r"[\s_\-.:|/]+")
# camelCase / PascalCase / ACRONYM words; digits stay separate words.
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def strip_node_prefix(name: str) -> str:
    """Drop a ``node.`` / ``mesh:`` prefix (``blendShape2.eyeBlink_L`` -> ``eyeBlink_L``), keeping
    Blender-style suffixes that belong to the name: sides (``eyeBlink.L``), one-letter tags
    (``head.x``) and numbers (``spine.006``)."""
    parts = re.split(r"[.:]", name.strip())
    last = parts[-1]
    if len(parts) >= 2 and (last.lower() in _SIDE_WORDS or len(last) <= 1 or last.isdigit()):
        return ".".join(parts[-2:])
    return last


def name_words(name: str) -> list[str]:
    """Lower-case words of a name after removing node and vendor prefixes; side words normalised."""
    core = _PREFIX.sub("", strip_node_prefix(name))
    words: list[str] = []
    for part in _SEPARATORS.split(core):
        words.extend(w.lower() for w in _WORDS.findall(part))
    return [_SIDE_WORDS.get(w, w) for w in words]


# Pure str -> str and called for every name of every preset on each mapping (the add-on maps on every
# panel redraw): remembered. Rig name sets are small, so the caches stay small.
@functools.lru_cache(maxsize=8192)
def name_key(name: str) -> str:
    """Comparable key: words joined by spaces, side words moved to the end."""
    words = name_words(name)
    sides = [w for w in words if w in ("left", "right")]
    body = [w for w in words if w not in ("left", "right")]
    return " ".join(body + sides)


def split_side(key: str) -> tuple[str, str | None]:
    """``"eye blink left"`` -> ``("eye blink", "left")``; unsided keys give ``(key, None)``."""
    head, _, last = key.rpartition(" ")
    if last in ("left", "right") and head:
        return head, last
    return key, None


@functools.lru_cache(maxsize=8192)
def loose(name: str) -> str:
    """Looser comparison for matching a preset's target names against a character's names:
    node prefix removed, case and separators ignored (``EyeBlink_L`` ~ ``eyeblink.l``)."""
    return re.sub(r"[\s_\-.]+", "", strip_node_prefix(name)).lower()


ARKIT_KEYS: dict[str, str] = {name_key(n): n for n in ARKIT_NAMES}
assert len(ARKIT_KEYS) == len(ARKIT_NAMES), "two ARKit names normalise to the same key"


def arkit_channel_for(name: str) -> str | None:
    """The ARKit channel a name denotes in any common spelling, or None."""
    return ARKIT_KEYS.get(name_key(name))
