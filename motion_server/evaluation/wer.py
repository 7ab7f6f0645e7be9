"""Word error rate of a recognised transcript against a reference, on the aligner's own word form
(lower case, punctuation dropped, numbers spelled out), so "1961" and "nineteen sixty-one" agree."""

from __future__ import annotations


def words(text: str) -> list[str]:
    from motion_server.align.text import normalise_transcript

    return normalise_transcript(text or "")


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference word count): Levenshtein over words."""
    r, h = words(reference), words(hypothesis)
    prev = list(range(len(h) + 1))
    for i in range(1, len(r) + 1):
        cur = [i] + [0] * len(h)
        for j in range(1, len(h) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r[i - 1] != h[j - 1]))
        prev = cur
    return prev[len(h)], len(r)
