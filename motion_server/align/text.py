"""Transcript -> dictionary words for forced alignment, with a letter-to-sound guess for unknown words."""

from __future__ import annotations

import re

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> list[str]:
    """English words for 0 <= n < 10**12 (years are read as plain numbers, which aligns well enough)."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    if n < 1000:
        return [_ONES[n // 100], "hundred"] + (number_words(n % 100) if n % 100 else [])
    for size, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand")):
        if n >= size:
            return number_words(n // size) + [name] + (number_words(n % size) if n % size else [])
    raise ValueError(n)


def normalise_transcript(text: str) -> list[str]:
    """Lower-case words: digits spelled out, punctuation dropped, inner apostrophes kept (``don't``)."""
    words: list[str] = []
    for tok in re.findall(r"[A-Za-z\u00C0-\u024F']+|\d+", text.replace("\u2019", "'")):
        if tok.isdigit():
            words.extend(number_words(int(tok)) if len(tok) <= 12 else [_ONES[int(c)] for c in tok])
        else:
            w = tok.strip("'").lower()
            if w:
                words.append(w)
    return words


# Grapheme -> ARPAbet, longest match first. A rough guess is enough: it only has to give the aligner
# the right number of roughly right sounds so the neighbouring words land in place.
_LTS: tuple[tuple[str, str], ...] = (
    ("tch", "CH"), ("sch", "S K"), ("igh", "AY"), ("ough", "AO"),
    ("ch", "CH"), ("sh", "SH"), ("th", "TH"), ("ph", "F"), ("ng", "NG"), ("ck", "K"), ("qu", "K W"),
    ("wh", "W"), ("gh", "G"), ("kn", "N"), ("wr", "R"),
    ("ee", "IY"), ("ea", "IY"), ("oo", "UW"), ("ou", "AW"), ("ow", "OW"), ("oa", "OW"), ("ai", "EY"),
    ("ay", "EY"), ("ei", "EY"), ("ey", "IY"), ("ie", "IY"), ("oi", "OY"), ("oy", "OY"), ("au", "AO"),
    ("aw", "AO"), ("er", "ER"), ("ir", "ER"), ("ur", "ER"), ("ar", "AA R"), ("or", "AO R"),
    ("a", "AE"), ("b", "B"), ("c", "K"), ("d", "D"), ("e", "EH"), ("f", "F"), ("g", "G"), ("h", "HH"),
    ("i", "IH"), ("j", "JH"), ("k", "K"), ("l", "L"), ("m", "M"), ("n", "N"), ("o", "AA"), ("p", "P"),
    ("q", "K"), ("r", "R"), ("s", "S"), ("t", "T"), ("u", "AH"), ("v", "V"), ("w", "W"), ("x", "K S"),
    ("y", "IY"), ("z", "Z"),
)
_FOLD = str.maketrans("àáâãäåèéêëìíîïòóôõöùúûüýÿçñ", "aaaaaaeeeeiiiiooooouuuuyycn")


def guess_pronunciation(word: str) -> str | None:
    """Space-separated ARPAbet guess for an out-of-dictionary word, or None if it has no letters."""
    w = re.sub(r"[^a-z]", "", word.lower().translate(_FOLD))
    if not w:
        return None
    if len(w) > 3 and w.endswith("e") and w[-2] not in "aeiou":
        w = w[:-1]  # silent final e
    phones: list[str] = []
    i = 0
    while i < len(w):
        for g, p in _LTS:
            if w.startswith(g, i):
                if g == "y" and i == 0:
                    p = "Y"
                if not (phones and phones[-1] == p):  # doubled letters are one sound
                    phones.append(p)
                i += len(g)
                break
    return " ".join(phones)
