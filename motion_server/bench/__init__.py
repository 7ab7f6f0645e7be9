"""``talkrig bench``: pluggable speed and memory benchmarks.

Each benchmark is a module in this package with ``run(ctx: BenchContext) -> list[dict]`` (one dict per
measured configuration) and an optional ``DESCRIPTION`` string. ``--what engine,server,blender`` imports
``motion_server.bench.engine``, ``.server``, ``.blender``; a new benchmark is a new module, no edits here.
Helpers every benchmark shares (timing statistics, peak memory, test audio) live in ``timing``/``audio``.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

# Modules here that are helpers, not benchmarks.
_HELPERS = frozenset({"audio", "machine", "timing", "context"})


class BenchmarkNotFound(LookupError):
    pass


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name not in _HELPERS and not m.name.startswith("_"))


def load(name: str) -> ModuleType:
    name = name.replace("-", "_")  # --what server-batch: motion_server/bench/server_batch.py
    if name in _HELPERS or name not in available():
        raise BenchmarkNotFound(
            f"no benchmark {name!r} (expected motion_server/bench/{name}.py with run(ctx)); "
            f"available: {', '.join(available()) or 'none'}")
    mod = importlib.import_module(f"{__name__}.{name}")
    if not callable(getattr(mod, "run", None)):
        raise BenchmarkNotFound(f"motion_server/bench/{name}.py has no run(ctx) function")
    return mod
