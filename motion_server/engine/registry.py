"""Engine names -> implementations, imported lazily so a light command never pays for torch."""

from __future__ import annotations

import importlib
from typing import Any

# name -> "module:Class". Engines register here, not with if-chains in callers.
_ENGINES: dict[str, str] = {
    "diffusion": "motion_server.model.engine:DiffusionEngine",
    "procedural": "motion_server.engine.procedural:ProceduralEngine",
    "energy": "motion_server.engine.energy:EnergyEngine",
}
ENGINE_NAMES: tuple[str, ...] = tuple(_ENGINES)
DEFAULT_ENGINE = "diffusion"


def create_engine(name: str, **kwargs: Any):
    """Instantiate an engine by name. kwargs go to its constructor (e.g. model=..., device=...)."""
    try:
        target = _ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)}") from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
