"""The performer's calibration against real people (``data/calibration.json``).

Every number there has a ``value`` and its source: a statistic of the evaluation's real references
(``motion_server/evaluation/references/motion_targets.json``) or a stated rule. The performer reads only
the values; tests check that the sourced ones still match the references.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

CALIBRATION_FILE = Path(__file__).with_name("data") / "calibration.json"


@lru_cache(maxsize=1)
def calibration() -> dict[str, Any]:
    data = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))
    if data.get("format") != "talkrig-performer-calibration":
        raise ValueError(f"{CALIBRATION_FILE} is not a performer calibration file (format "
                         f"{data.get('format')!r}); restore it from the repository")
    return data


def cal(path: str) -> Any:
    """The ``value`` at a dotted path, e.g. ``cal("head.std_deg.yaw")``."""
    node: Any = calibration()
    for key in path.split("."):
        if not isinstance(node, dict) or key not in node:
            raise KeyError(f"{CALIBRATION_FILE} has no entry {path!r}")
        node = node[key]
    if not isinstance(node, dict) or "value" not in node:
        raise KeyError(f"{CALIBRATION_FILE}: {path!r} has no 'value'")
    return node["value"]


def emotion_head_scale(emotion: str, intensity: int) -> float:
    """How much more (or less) the head moves in ``emotion`` at ``intensity`` than in neutral speech."""
    ratios = calibration()["emotion_head"]["mead_ratio"]
    if emotion not in ratios:
        return 1.0  # neutral
    share = cal("emotion_head.share")[str(int(intensity))]
    return float(math.exp(math.log(ratios[emotion]["value"]) * cal("emotion_head.compression") * share))


def soft_limit_head(angles: Any) -> Any:
    """Head angles in degrees through ``limit * tanh(angle / limit)`` (``head.limit_deg``): small angles are
    unchanged, none passes the limit, so a clip's range stays under twice it. The performer's targets and
    the diffusion engine's output (after its variance gain) both pass it."""
    import numpy as np

    lim = float(cal("head.limit_deg"))
    return lim * np.tanh(np.asarray(angles) / lim)
