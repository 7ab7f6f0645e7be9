"""ARPAbet phone -> viseme target table, loaded from ``data/visemes.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .channels import channel_vector

DATA = Path(__file__).with_name("data") / "visemes.toml"


@dataclass(frozen=True)
class Viseme:
    phone: str
    viseme_class: str
    target: np.ndarray  # [52] ARKit values
    dom_jaw: float
    dom_lips: float
    is_open: bool  # a vowel: opening scales with stress and duration
    glide_to: str | None


@dataclass(frozen=True)
class BlendParams:
    anticipation_s: float
    carryover_s: float
    exponent: float
    core_margin_s: float
    short_vowel_s: float
    min_short_scale: float
    stress_scale: dict[int, float]


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[dict[str, Viseme], BlendParams]:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    b = data.pop("blend")
    params = BlendParams(
        anticipation_s=float(b["anticipation_s"]),
        carryover_s=float(b["carryover_s"]),
        exponent=float(b["exponent"]),
        core_margin_s=float(b["core_margin_s"]),
        short_vowel_s=float(b["short_vowel_s"]),
        min_short_scale=float(b["min_short_scale"]),
        stress_scale={int(k): float(v) for k, v in b["stress_scale"].items()},
    )
    table: dict[str, Viseme] = {}
    for cls, entry in data.items():
        target = channel_vector(entry["target"])
        for ph in entry["phones"]:
            if ph in table:
                raise ValueError(f"{path}: phone {ph} is listed in two classes")
            table[ph] = Viseme(
                phone=ph,
                viseme_class=cls,
                target=target,
                dom_jaw=float(entry["dominance"]["jaw"]),
                dom_lips=float(entry["dominance"]["lips"]),
                is_open=bool(entry.get("open", False)),
                glide_to=entry.get("glide_to"),
            )
    for v in table.values():
        if v.glide_to is not None and v.glide_to not in table:
            raise ValueError(f"{path}: {v.phone} glides to unknown phone {v.glide_to}")
    return table, params


def viseme_table(path: Path = DATA) -> dict[str, Viseme]:
    return _load(str(path))[0]


def blend_params(path: Path = DATA) -> BlendParams:
    return _load(str(path))[1]


BILABIALS = frozenset({"P", "B", "M"})
# the wide-open vowels: where lips must be apart (the open/bilabial ratio and false-closure counts read them)
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY"})


def viseme_for(symbol: str) -> Viseme:
    """The viseme of an ARPAbet symbol (stress digits tolerated); unknown symbols act like AH."""
    table = viseme_table()
    s = symbol.upper().rstrip("012")
    return table.get(s) or table["AH"]


def rest_target() -> np.ndarray:
    return viseme_table()["SIL"].target.copy()
