"""The one style grammar every engine reads: ``name`` or ``name:level`` (level 1 subtle, 2 as trained,
3 strong), ``predicted``, or a reference clip (given to the engine as data). ``happy`` is ``happy:2``."""

from __future__ import annotations

import re

LEVELS = (1, 2, 3)
DEFAULT_LEVEL = 2
# How far a level carries the style away from neutral, relative to level 2 (the diffusion model applies
# it to the guidance scale; the procedural performer has a preset per level).
LEVEL_SCALE = {1: 0.5, 2: 1.0, 3: 1.5}
_PRESET = re.compile(r"^(?P<name>[a-z]+)(?:[:_-](?P<level>\d))?$")


def split_level(style: str) -> tuple[str, int | None]:
    """``"sad:3"`` -> ("sad", 3); ``"sad"`` -> ("sad", None); anything else (a path, "predicted") is
    returned whole with None. A level outside 1-3 is an error naming the accepted ones."""
    m = _PRESET.match(style.strip().lower())
    if m is None:
        return style, None
    if m["level"] is None:
        return m["name"], None
    level = int(m["level"])
    if level not in LEVELS:
        raise ValueError(f"style {style!r}: the level after ':' must be 1 (subtle), 2 or 3 (strong)")
    return m["name"], level
