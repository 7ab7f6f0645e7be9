"""Sentence lists for the synthetic corpus (data files in this folder).

English: ``sentences_en.json`` (generated from ``english_templates.json`` by ``make_english.py``: template
sentences, short phrases, numbers, pauses, questions, exclamations). Other languages:
``sentences_intl.json``. Sentence ids (``en-0042``, ``de-0007``) are stable and used for held-out splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Sentence:
    id: str
    text: str
    language: str  # base language, e.g. "en", "de"
    kind: str = "sentence"


def base_language(language: str) -> str:
    """"en-gb-scotland" -> "en"."""
    return language.split("-")[0].lower()


@lru_cache(maxsize=1)
def _all() -> dict[str, tuple[Sentence, ...]]:
    en = json.loads((HERE / "sentences_en.json").read_text(encoding="utf-8"))
    out = {"en": tuple(Sentence(s["id"], s["text"], "en", s["kind"]) for s in en["sentences"])}
    intl = json.loads((HERE / "sentences_intl.json").read_text(encoding="utf-8"))
    for lang, texts in intl.items():
        if lang.startswith("_"):
            continue
        out[lang] = tuple(Sentence(f"{lang}-{i:04d}", t, lang) for i, t in enumerate(texts))
    return out


def languages() -> list[str]:
    return sorted(_all())


def load_sentences(language: str) -> tuple[Sentence, ...]:
    """All sentences for ``language`` (a base code or a voice language such as "en-us")."""
    lang = base_language(language)
    data = _all()
    if lang not in data:
        raise KeyError(f"no sentences for language {language!r}; available: {', '.join(sorted(data))}")
    return data[lang]
