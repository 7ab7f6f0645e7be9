"""Build the engine the server runs: a registry name ("energy", "procedural", "diffusion") or an
import path "package.module:Class" for a user's own engine implementing motion_server.engine.Engine."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ..engine.registry import ENGINE_NAMES, create_engine


def load_engine(name: str, model: str | None = None, device: str | None = None) -> Any:
    if ":" in name:
        mod, _, cls_name = name.partition(":")
        try:
            cls = getattr(importlib.import_module(mod), cls_name)
        except (ImportError, AttributeError) as e:
            raise ValueError(f"cannot load engine {name!r}: {e}") from None
    else:
        if name not in ENGINE_NAMES:
            raise ValueError(f"unknown engine {name!r}; choose one of {', '.join(ENGINE_NAMES)} or module:Class")
        cls = None
    kwargs: dict[str, Any] = {}
    params = _params(cls, name)
    if model is not None:
        if params is not None and "model" not in params:
            raise ValueError(f"engine {name!r} takes no model; drop --model")
        kwargs["model"] = model
    if device is not None and (params is None or "device" in params):
        kwargs["device"] = device  # engines without a device (procedural) simply run on the CPU
    if cls is not None:
        return cls(**kwargs)
    return create_engine(name, **kwargs)


def _params(cls: Any, name: str) -> set[str] | None:
    """Constructor parameter names, or None when they accept **kwargs (or cannot be inspected)."""
    if cls is None:
        from ..engine import registry

        target = registry._ENGINES[name]
        mod, _, cls_name = target.partition(":")
        cls = getattr(importlib.import_module(mod), cls_name)
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)
