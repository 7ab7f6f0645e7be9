"""Regenerate ``sentences_en.json`` from ``english_templates.json`` (deterministic; run after editing the
templates): ``python -m motion_server.synth.text.make_english``."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent
_SLOT = re.compile(r"\{(\w+)\}")
_ARTICLE = re.compile(r"\b([Aa]) ([aeioAEIO]|umbrella|ugly)")


def _fill(template: str, words: dict[str, list[str]], rng: random.Random) -> str:
    # repeated slots of one kind get different words ("cheese and bread", not "cheese and cheese")
    used: dict[str, list[str]] = {}

    def pick(m: re.Match) -> str:
        key = m.group(1)
        pool = [w for w in words[key] if w not in used.get(key, [])] or words[key]
        w = rng.choice(pool)
        used.setdefault(key, []).append(w)
        return w

    text = _SLOT.sub(pick, template)
    text = _ARTICLE.sub(lambda m: m.group(1) + "n " + m.group(2), text)  # "a awkward" -> "an awkward"
    return text[0].upper() + text[1:]


def generate(seed: int = 2026) -> list[dict[str, str]]:
    spec = json.loads((HERE / "english_templates.json").read_text(encoding="utf-8"))
    rng = random.Random(seed)
    words = dict(spec["words"])
    nw = spec["number_words"]
    words.update({k: v for k, v in nw.items() if k != "digit"})
    words.update({f"d{i}": nw["digit"] for i in range(1, 8)})
    out: list[dict[str, str]] = []
    seen: set[str] = set()

    def add(text: str, kind: str) -> bool:
        if text in seen:
            return False
        seen.add(text)
        out.append({"id": f"en-{len(out):04d}", "text": text, "kind": kind})
        return True

    for text in spec["phrases"]:
        add(text, "phrase")
    for kind, key in (("sentence", "templates"), ("number", "numbers")):
        n, tries = 0, 0
        while n < spec["counts"][key] and tries < 100 * spec["counts"][key]:
            tries += 1
            n += add(_fill(rng.choice(spec[key]), words, rng), kind)
    return out


def main() -> None:
    items = generate()
    data = {"language": "en", "generator": "make_english.py", "sentences": items}
    (HERE / "sentences_en.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(items)} English items")


if __name__ == "__main__":
    main()
