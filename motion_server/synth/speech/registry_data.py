"""Loads ``voices.json`` (the voice list per backend)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

VOICES_PATH = Path(__file__).with_name("voices.json")


@lru_cache(maxsize=1)
def voices_data() -> dict:
    return json.loads(VOICES_PATH.read_text(encoding="utf-8"))


def backend_entry(backend: str) -> dict:
    return voices_data()[backend]
