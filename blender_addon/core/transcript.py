"""``<audio stem>.txt`` beside an audio file is its transcript (the same convention as `talkrig animate`)."""

from __future__ import annotations

from pathlib import Path


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
