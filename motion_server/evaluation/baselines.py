"""The baselines every model result is compared with in ``talkrig eval``.

- ``energy``: the loudness-driven jaw (``motion_server.engine.energy.EnergyEngine``), what cheap lip-sync
  tools do.
- ``procedural_recognised``: the procedural performer on *recognised* phones (``ProceduralEngine`` with
  no transcript): the non-neural baseline of DESIGN.md.
"""

from __future__ import annotations

from typing import Any

# name -> (engine registry name, how its options differ from the evaluated engine's)
BASELINES: dict[str, tuple[str, dict[str, Any]]] = {
    "energy": ("energy", {}),
    "procedural_recognised": ("procedural", {"transcript": None}),
}
