"""The phone inventory: time-aligned ARPAbet phones shared by the aligner, the recogniser, the model's
phone track, the performer, the evaluation and the synthetic corpus.

Every backend reports phones in its own alphabet (Festival ``radio``/``mrpa``, Flite ``cmu``, eSpeak NG
mnemonics, IPA). :func:`to_arpabet` folds them into one ARPAbet set (39 phones + ``SIL``) so the
procedural performer needs a single viseme table. The folding tables are data:
``phone_maps.json`` next to this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

_MAPS_PATH = Path(__file__).with_name("phone_maps.json")

SIL = "SIL"


class PhoneError(ValueError):
    """Invalid phone data or unknown phone symbol."""


@dataclass(frozen=True)
class Phone:
    """One phone. ``symbol`` is upper-case ARPAbet without stress digits, or ``"SIL"`` for silence."""

    symbol: str  # ARPAbet, upper-case, no stress digits, or "SIL"
    start: float  # seconds
    end: float  # seconds
    stress: int | None = None
    word: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def is_silence(self) -> bool:
        return self.symbol == SIL


PhoneSequence = list[Phone]


@lru_cache(maxsize=1)
def _maps() -> dict:
    return json.loads(_MAPS_PATH.read_text(encoding="utf-8"))


def arpabet_symbols() -> tuple[str, ...]:
    """The normalised symbol inventory; index 0 is ``SIL``. Stable order (used as integer ids in shards)."""
    return tuple(_maps()["arpabet"])


def vowel_symbols() -> frozenset[str]:
    return frozenset(_maps()["vowels"])


def phone_sources() -> tuple[str, ...]:
    return tuple(sorted(_maps()["sources"]))


def to_arpabet(symbol: str, source: str, strict: bool = False) -> str:
    """Map a backend's phone ``symbol`` (alphabet ``source``: radio, mrpa, cmu, espeak, ipa) to ARPAbet.

    Lookup order: exact; with marker characters stripped (stress, length, tie bars); the longest known
    prefix. An unknown symbol raises :class:`PhoneError` when ``strict`` and otherwise maps to ``AH``
    (neutral open-mid mouth) so one odd foreign phone cannot abort a corpus build.
    """
    maps = _maps()
    table = maps["sources"].get(source)
    if table is None:
        raise PhoneError(f"unknown phone source {source!r}; expected one of {phone_sources()}")
    if symbol in table:
        return table[symbol]
    cleaned = symbol
    for ch in maps["strip_chars"].get(source, []):
        cleaned = cleaned.replace(ch, "")
    if source in ("radio", "cmu", "mrpa"):
        cleaned = cleaned.lower()
    if cleaned in table:
        return table[cleaned]
    if not cleaned.strip():
        return SIL
    for n in range(len(cleaned) - 1, 0, -1):
        if cleaned[:n] in table:
            return table[cleaned[:n]]
    if strict:
        raise PhoneError(f"no ARPAbet mapping for {source} phone {symbol!r}")
    return "AH"


# ----------------------------------------------------------------------------------------------------------
# sequence helpers


def validate_phones(phones: Sequence[Phone], tol: float = 1e-6) -> None:
    """Raise :class:`PhoneError` unless phones are known symbols, ordered and non-overlapping."""
    known = set(arpabet_symbols())
    prev_end = 0.0
    for i, p in enumerate(phones):
        if p.symbol not in known:
            raise PhoneError(f"phone {i} has non-ARPAbet symbol {p.symbol!r}; normalise with to_arpabet()")
        if p.end < p.start - tol:
            raise PhoneError(f"phone {i} ({p.symbol}) ends before it starts: {p.start} > {p.end}")
        if p.start < prev_end - tol:
            raise PhoneError(f"phone {i} ({p.symbol}) starts at {p.start:.4f}s before previous end {prev_end:.4f}s")
        prev_end = p.end


def merge_silences(phones: Iterable[Phone]) -> PhoneSequence:
    """Join adjacent SIL phones and drop zero-length phones."""
    out: PhoneSequence = []
    for p in phones:
        if p.end - p.start <= 0:
            continue
        if out and p.is_silence and out[-1].is_silence:
            out[-1] = replace(out[-1], end=p.end)
        else:
            out.append(p)
    return out


def scale_times(phones: Iterable[Phone], factor: float, offset: float = 0.0) -> PhoneSequence:
    """Times multiplied by ``factor`` then shifted by ``offset`` seconds (tempo change, padding)."""
    return [replace(p, start=p.start * factor + offset, end=p.end * factor + offset) for p in phones]


def pad_to(phones: Sequence[Phone], duration: float) -> PhoneSequence:
    """Make phones cover [0, duration]: leading/trailing SIL added or the last phone clipped."""
    out: PhoneSequence = []
    if phones and phones[0].start > 1e-6:
        out.append(Phone(SIL, 0.0, phones[0].start))
    for p in phones:
        if p.start >= duration:
            break
        out.append(replace(p, end=min(p.end, duration)))
    last = out[-1].end if out else 0.0
    if duration - last > 1e-6:
        out.append(Phone(SIL, last, duration))
    return merge_silences(out)


def speech_span(phones: Sequence[Phone]) -> tuple[float, float] | None:
    """(start of first non-SIL phone, end of last non-SIL phone), or None if all silence."""
    speech = [p for p in phones if not p.is_silence]
    if not speech:
        return None
    return speech[0].start, speech[-1].end


def phones_to_arrays(phones: Sequence[Phone]) -> dict[str, np.ndarray]:
    """Columnar form for npz shards: ids (int16 index into :func:`arpabet_symbols`), start/end (float32 s),
    stress (int8, -1 = none). Words are not kept (text is stored per utterance)."""
    index = {s: i for i, s in enumerate(arpabet_symbols())}
    return {
        "ids": np.array([index[p.symbol] for p in phones], dtype=np.int16),
        "start": np.array([p.start for p in phones], dtype=np.float32),
        "end": np.array([p.end for p in phones], dtype=np.float32),
        "stress": np.array([-1 if p.stress is None else p.stress for p in phones], dtype=np.int8),
    }


def phones_from_arrays(ids: np.ndarray, start: np.ndarray, end: np.ndarray,
                       stress: np.ndarray | None = None) -> PhoneSequence:
    syms = arpabet_symbols()
    out: PhoneSequence = []
    for k in range(len(ids)):
        st = None if stress is None or int(stress[k]) < 0 else int(stress[k])
        out.append(Phone(syms[int(ids[k])], float(start[k]), float(end[k]), st))
    return out


def save_phones(phones: Sequence[Phone], path: str | Path) -> None:
    """Write phones as JSON: ``{"phones": [{"symbol", "start", "end", "stress", "word"}, ...]}``."""
    data = {"format": "talkrig-phones", "version": 1, "phones": [asdict(p) for p in phones]}
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def load_phones(path: str | Path) -> PhoneSequence:
    """Read phones written by :func:`save_phones`; validates order and symbols."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        phones = [Phone(str(d["symbol"]), float(d["start"]), float(d["end"]),
                        None if d.get("stress") is None else int(d["stress"]), d.get("word"))
                  for d in data["phones"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise PhoneError(f"cannot read phones from {path}: {exc}; expected a file written by save_phones()") from exc
    validate_phones(phones)
    return phones
