"""Model/training configuration as plain JSON data (configs/*.json), with a validity check."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from . import CONFIG_DIR

REQUIRED_SECTIONS = ("features", "model", "diffusion", "window", "lip_expert", "style_predictor",
                     "sampling", "train")


WEIGHTS = "model.safetensors"  # a checkpoint is a folder holding these two files
CONFIG = "config.json"


class ConfigError(ValueError):
    """A configuration file is missing, malformed or inconsistent."""


class CheckpointError(ValueError):
    """A checkpoint is missing, inconsistent or was made for other settings."""


def reads_phones(cfg: dict[str, Any]) -> bool:
    """Whether a model built from ``cfg`` reads the aligned phone track (it then has ``phone_embed``)."""
    return bool(cfg.get("phones"))


def read_config(path: str | Path) -> dict[str, Any]:
    """A checkpoint's config.json (``path``: its folder or its weights file), read without torch."""
    p = Path(path)
    cfg_file = p / CONFIG if p.is_dir() else p.with_name(CONFIG)
    if not cfg_file.is_file():
        raise CheckpointError(f"no {CONFIG} next to the weights at {p}; a checkpoint is a folder with "
                              f"{WEIGHTS} and {CONFIG}")
    try:
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_file} is not readable JSON ({e}); use the {CONFIG} saved with the "
                              "weights (or copy the checkpoint folder again)") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_file} holds a JSON {type(cfg).__name__}, not an object; use the "
                              f"{CONFIG} saved with the weights (or copy the checkpoint folder again)")
    return cfg



def load_config(name_or_path: str | Path) -> dict[str, Any]:
    """A bundled config by name ("tiny", "default") or a JSON file path."""
    p = Path(name_or_path)
    if not p.suffix and not p.exists():
        p = CONFIG_DIR / f"{name_or_path}.json"
    if not p.is_file():
        known = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.json")))
        raise ConfigError(f"config {str(name_or_path)!r} not found; give a JSON file or one of: {known}")
    try:
        cfg = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"config {p} is not valid JSON: {e}") from None
    validate_config(cfg)
    return cfg


def validate_config(cfg: dict[str, Any]) -> None:
    missing = [s for s in REQUIRED_SECTIONS if s not in cfg]
    if missing:
        raise ConfigError(f"config lacks section(s) {missing}; start from motion_server/model/configs/default.json")
    m = cfg["model"]
    if m["d_model"] % m["n_heads"]:
        raise ConfigError(f"model.d_model ({m['d_model']}) must be divisible by model.n_heads ({m['n_heads']})")
    w = cfg["window"]
    if not 0 <= w["overlap"] < w["frames"] // 2 + 1:
        raise ConfigError(f"window.overlap ({w['overlap']}) must be in [0, frames/2] (frames={w['frames']})")
    smp = cfg.get("sampling", {})
    g, n = smp.get("style_guidance", 1.0), smp.get("style_samples", 1)
    if not (isinstance(g, (int, float)) and 0.0 <= g <= 20.0):
        raise ConfigError(f"sampling.style_guidance ({g!r}) must be a number in [0, 20] (1 = no guidance)")
    if not (isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 256):
        raise ConfigError(f"sampling.style_samples ({n!r}) must be a whole number in [1, 256]")


def override(cfg: dict[str, Any], **sections: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``cfg`` with some keys of some sections replaced."""
    out = copy.deepcopy(cfg)
    for sec, vals in sections.items():
        out.setdefault(sec, {}).update(vals)
    validate_config(out)
    return out
