"""PocketSphinx decoders on the English model that ships inside the ``pocketsphinx`` wheel (no download).

Decoders are not thread-safe and load the 130k-word dictionary (~0.2 s), so each thread keeps its own.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from motion_server.dsp import resample
from motion_server.options import SAMPLE_RATE

if TYPE_CHECKING:
    from pocketsphinx import Decoder

FRAME_RATE = 100  # pocketsphinx feature frames per second (10 ms)


class AlignError(RuntimeError):
    """Alignment or recognition could not run; the message says why and what to do."""


_local = threading.local()
# id(decoder) -> its cepstral mean right after loading. PocketSphinx carries the mean over from one
# utterance to the next, which would make a clip's phones depend on what was decoded before it.
_INITIAL_CMN: dict[int, str] = {}


def model_paths() -> dict[str, str]:
    try:
        import pocketsphinx
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise AlignError("pocketsphinx is not installed; pip install 'pocketsphinx>=5'") from exc
    root = Path(pocketsphinx.get_model_path()) / "en-us"
    paths = {
        "hmm": str(root / "en-us"),
        "dict": str(root / "cmudict-en-us.dict"),
        "phone_lm": str(root / "en-us-phone.lm.bin"),
    }
    for k in ("hmm", "dict"):
        if not os.path.exists(paths[k]):
            raise AlignError(f"pocketsphinx English model file missing: {paths[k]}; reinstall pocketsphinx")
    return paths


def align_decoder(wide: bool = False) -> Decoder:
    """A decoder for forced alignment (dictionary, no language model). ``wide``: much wider beams, ~4x
    slower; the retry when the default search loses the path (long pauses, hoarse or noisy voices)."""
    key = "align_wide" if wide else "align"
    dec = getattr(_local, key, None)
    if dec is None:
        from pocketsphinx import Decoder

        p = model_paths()
        beams = {"beam": 1e-100, "wbeam": 1e-80, "pbeam": 1e-100} if wide else {}
        dec = Decoder(hmm=p["hmm"], dict=p["dict"], lm=None, loglevel="FATAL", **beams)
        _INITIAL_CMN[id(dec)] = dec.get_cmn()
        setattr(_local, key, dec)
    return dec


def phone_decoder() -> Decoder:
    """A phone-loop recogniser (allphone search with the phonetic language model when shipped)."""
    dec = getattr(_local, "phone", None)
    if dec is None:
        from pocketsphinx import Decoder

        p = model_paths()
        kw = {"allphone": p["phone_lm"]} if os.path.exists(p["phone_lm"]) else {"allphone": p["hmm"] + "/mdef"}
        # wider beams than the defaults: phone loops prune too hard on noisy or foreign speech
        dec = Decoder(hmm=p["hmm"], lm=None, loglevel="FATAL", backtrace=True, beam=1e-20, pbeam=1e-20, lw=2.0, **kw)
        _INITIAL_CMN[id(dec)] = dec.get_cmn()
        _local.phone = dec
    return dec


def decode(dec: Decoder, pcm: np.ndarray) -> None:
    """One whole utterance, starting from the model's initial cepstral mean (history-free, so the same
    audio always gives the same phones)."""
    dec.reinit_feat()  # also resets the noise tracker, which set_cmn alone does not
    cmn = _INITIAL_CMN.get(id(dec))
    if cmn is not None:
        dec.set_cmn(cmn)
    dec.start_utt()
    dec.process_raw(pcm.tobytes(), full_utt=True)
    dec.end_utt()


def to_pcm16(audio: np.ndarray, sr: int) -> np.ndarray:
    """Mono float audio at any rate -> int16 at 16 kHz (what the acoustic model was trained on)."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise AlignError("audio contains NaN or infinite samples")
    if sr != SAMPLE_RATE:
        x = resample(x, int(sr), SAMPLE_RATE)
    return (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")


def split_points(pcm: np.ndarray, max_s: float, search_s: float = 5.0) -> list[tuple[int, int]]:
    """Sample ranges of at most ``max_s`` seconds, cut at the quietest 10 ms within the last ``search_s``
    seconds of each range so a cut rarely falls inside a word."""
    n = pcm.size
    step = int(max_s * SAMPLE_RATE)
    if n <= step:
        return [(0, n)]
    hop = SAMPLE_RATE // FRAME_RATE
    out: list[tuple[int, int]] = []
    a = 0
    while n - a > step:
        lo, hi = a + step - int(search_s * SAMPLE_RATE), a + step
        frames = pcm[lo:hi].astype(np.float64)
        m = frames.size // hop
        e = (frames[: m * hop].reshape(m, hop) ** 2).mean(axis=1)
        cut = lo + int(np.argmin(e)) * hop
        out.append((a, cut))
        a = cut
    out.append((a, n))
    return out
