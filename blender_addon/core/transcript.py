"""Transcripts in the add-on, without bpy: the ``<audio stem>.txt`` convention, what a recognised
transcript means for the lips, and the lines the panel shows about it.

A take's transcript info is the server's ``meta["transcript"]`` ({source: given|recognised|none, text,
language, used, reason, ...}); the transcribe request's result is {text, language,
language_probability, words, model, seconds, notes} (docs/protocol.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Languages the server can align to phones (motion_server.transcribe.ALIGNER_LANGUAGES; the add-on may
# not import that package, and tests/test_blender_transcribe.py keeps the two equal).
ALIGNER_LANGUAGES = frozenset({"en"})

_SHOWN_CHARS = 40


def sidecar_transcript(audio: Path) -> str | None:
    """The text of ``audio``'s sidecar .txt, stripped; None when there is none or it is empty. Raises
    ValueError naming the file when it cannot be read."""
    side = Path(audio).with_suffix(".txt")
    if not side.is_file():
        return None
    try:
        return side.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the transcript {side} ({exc})") from None


def drives_lips(language: str) -> bool:
    """Whether text in ``language`` (ISO code; empty = not known, taken as English) can be aligned."""
    lang = language.strip().lower()
    return not lang or lang in ALIGNER_LANGUAGES


def no_aligner_note(language: str) -> str:
    return f"detected '{language}': the transcript will not drive the lips (only English is aligned to phones)"


def transcribed_message(tr: Mapping[str, Any]) -> tuple[str, str]:
    """(report level, message) for the result of a transcribe request."""
    text = str(tr.get("text") or "").strip()
    lang = str(tr.get("language") or "")
    prob = tr.get("language_probability")
    heard = f"'{lang}'" + (f" ({float(prob):.0%})" if isinstance(prob, (int, float)) and lang else "")
    if not text:
        return "WARNING", f"no speech recognised (language {heard or 'unknown'}); the Transcript field is unchanged"
    if not drives_lips(lang):
        return "WARNING", f"{no_aligner_note(lang)}; the text is in the Transcript field to read"
    return "INFO", (f"Transcribed {len(text.split())} words, language {heard or 'unknown'}: read and correct the "
                    "Transcript, then Generate")


def language_line(language: str) -> str:
    """The panel's line under the Transcript field ("" when no language is known)."""
    lang = language.strip()
    if not lang:
        return ""
    return f"language: {lang}" if drives_lips(lang) else no_aligner_note(lang)


def withheld_transcript(text: str, language: str) -> dict[str, Any] | None:
    """The take's transcript info when the panel's text is in a language without an aligner: Generate does
    not send it (aligning it as English would close the lips in the wrong places). None otherwise."""
    text = text.strip()
    if not text or drives_lips(language):
        return None
    return {"source": "given", "text": text, "language": language.strip(), "used": False,
            "reason": f"detected '{language.strip()}' has no phone aligner; the audio alone drove the lips"}


def take_properties(info: Mapping[str, Any] | None) -> dict[str, str | bool]:
    """Custom properties (without the ``talkrig_`` prefix) that keep a take's transcript on its Action."""
    if not isinstance(info, Mapping):
        return {}
    return {
        "transcript": str(info.get("text") or ""),
        "transcript_source": str(info.get("source") or "none"),
        "transcript_language": str(info.get("language") or ""),
        "transcript_used": bool(info.get("used", False)),
        "transcript_reason": str(info.get("reason") or ""),
    }


def take_line(props: Mapping[str, Any]) -> str:
    """"take made with: recognised [en] 'And so my fellow…' (used)" from an Action's properties (with or
    without the ``talkrig_`` prefix); "" when the take has no transcript record."""
    def get(key: str) -> Any:
        return props.get(f"talkrig_{key}", props.get(key))

    source = get("transcript_source")
    if not source:
        return ""
    if source == "none":
        reason = str(get("transcript_reason") or "")
        return "take made with: no transcript" + (f" ({reason})" if reason else "")
    text = str(get("transcript") or "")
    shown = text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1].rstrip() + "…"
    lang = str(get("transcript_language") or "")
    state = "used" if get("transcript_used") else "not used"
    return f"take made with: {source}{f' [{lang}]' if lang else ''} '{shown}' ({state})"
