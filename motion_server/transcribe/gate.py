"""Which part of a recognised transcript may drive the lips.

A transcript pins closures: every /p b m/ in it shuts the lips. A wrong word therefore does more harm
than no word, so a recognised transcript is used only where it is likely right:
- its language has a phone aligner (English, pocketsphinx) and was detected with confidence;
- words the recogniser itself is unsure of (probability below ``UNSURE_WORD_PROBABILITY``) keep their
  place in the alignment, but their phones are marked unknown, so there the audio alone decides.
The thresholds were chosen on the shared English clips (docs/transcription.md has the measurement).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from motion_server.phones import Phone

from .recogniser import Transcript, Word

ALIGNER_LANGUAGES = frozenset({"en"})
MIN_LANGUAGE_PROBABILITY = 0.5
UNSURE_WORD_PROBABILITY = 0.35
MIN_SURE_FRACTION = 0.5  # below this the whole transcript is dropped: the recogniser was guessing
UNSURE = "UNK"  # not an ARPAbet symbol: the model reads it as "unknown phone", the closure rule skips it
_SLACK_S = 0.12  # the recogniser's word times are coarser than the aligner's


def without_aligner(language: str | None) -> str | None:
    """"language 'de' has no phone aligner (only en)" for a known language whose phones cannot be
    aligned, else None (English, or not known)."""
    if not language or language in ALIGNER_LANGUAGES:
        return None
    return f"language '{language}' has no phone aligner (only {', '.join(sorted(ALIGNER_LANGUAGES))})"


@dataclass(frozen=True)
class TranscriptDecision:
    use: bool
    reason: str
    unsure: tuple[Word, ...] = ()


def decide(tr: Transcript) -> TranscriptDecision:
    """Whether ``tr`` may be aligned and used, why (one sentence for the user), and its unsure words."""
    lang = tr.language or "unknown"
    if not tr.language:
        return TranscriptDecision(False, "the language could not be checked, so the audio alone drives the lips")
    unaligned = without_aligner(tr.language)
    if unaligned:
        return TranscriptDecision(False, f"detected {unaligned}; the audio alone drives the lips")
    if tr.language_probability < MIN_LANGUAGE_PROBABILITY:
        return TranscriptDecision(False, f"language '{lang}' detected with only {tr.language_probability:.0%} "
                                  "confidence; the audio alone drives the lips")
    if not tr.words:
        return TranscriptDecision(False, "no words recognised; the audio alone drives the lips")
    unsure = tuple(w for w in tr.words if w.probability < UNSURE_WORD_PROBABILITY)
    sure = 1.0 - len(unsure) / len(tr.words)
    if sure < MIN_SURE_FRACTION:
        return TranscriptDecision(False, f"the recogniser was unsure of {len(unsure)} of {len(tr.words)} words; "
                                  "the audio alone drives the lips", unsure)
    reason = "recognised transcript used"
    if unsure:
        reason += f"; {len(unsure)} unsure word(s) left to the audio: " + ", ".join(w.text for w in unsure[:8])
    return TranscriptDecision(True, reason, unsure)


def _labels(word: str) -> set[str]:
    return {t for t in re.split(r"[^a-z']+", word.lower()) if t}


def mark_unsure_phones(phones: Sequence[Phone], unsure: Sequence[Word]) -> list[Phone]:
    """Phones of the aligned transcript that belong to an unsure word become ``UNSURE``: matched by the
    word's spelling and by time (the phone's middle within the recogniser's word span, with slack)."""
    if not unsure:
        return list(phones)
    spans = [(w.start - _SLACK_S, w.end + _SLACK_S, _labels(w.text)) for w in unsure]
    out = []
    for p in phones:
        mid = 0.5 * (p.start + p.end)
        hit = p.word is not None and any(a <= mid <= b and (p.word.lower() in labels or not labels)
                                         for a, b, labels in spans)
        out.append(replace(p, symbol=UNSURE) if hit and not p.is_silence else p)
    return out
