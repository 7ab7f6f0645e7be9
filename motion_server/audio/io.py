"""Decode any common audio container to mono float32 at a chosen sample rate.

soundfile (libsndfile) reads wav/flac/ogg/mp3; everything else (m4a/aac, opus in some builds, video
containers) goes through the ffmpeg binary. No network, no hub.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np

DEFAULT_SR = 16000


class AudioError(ValueError):
    """Audio that cannot be used; the message says why and what to do."""


def audio_sha256(data: bytes | str | Path) -> str:
    b = Path(data).read_bytes() if isinstance(data, (str, Path)) else data
    return hashlib.sha256(b).hexdigest()


def _resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    if sr_in == sr_out:
        return x
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(sr_in, sr_out)
    return resample_poly(x, sr_out // g, sr_in // g).astype(np.float32)


def _decode_ffmpeg(src: bytes | Path, sr: int) -> np.ndarray:
    ff = shutil.which("ffmpeg")
    if ff is None:
        raise AudioError("this audio format needs ffmpeg, which is not installed (apt-get install ffmpeg)")
    if isinstance(src, bytes):
        # MP4/M4A keep their index (moov) at the end, which ffmpeg cannot seek to in a pipe: use a file
        import tempfile

        with tempfile.NamedTemporaryFile(prefix="talkrig-audio-") as tmp:
            tmp.write(src)
            tmp.flush()
            return _decode_ffmpeg(Path(tmp.name), sr)
    cmd = [ff, "-nostdin", "-v", "error", "-i", str(src), "-vn", "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1"]
    p = subprocess.run(cmd, capture_output=True)
    if p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"cannot decode audio: {msg[-1] if msg else 'ffmpeg failed'}")
    return np.frombuffer(p.stdout, dtype="<f4").astype(np.float32)


def load_audio(src: str | Path | bytes, sr: int = DEFAULT_SR, max_seconds: float | None = None) -> np.ndarray:
    """Return mono float32 samples in [-1, 1] at ``sr`` Hz from a path or the bytes of a file."""
    if isinstance(src, (str, Path)):
        path = Path(src)
        if not path.is_file():
            raise AudioError(f"audio file not found: {path}")
        data_src: bytes | Path = path
    elif isinstance(src, (bytes, bytearray, memoryview)):
        data_src = bytes(src)
        if not data_src:
            raise AudioError("audio is empty (0 bytes)")
    else:
        raise AudioError(f"audio must be a path or bytes, got {type(src).__name__}")
    try:
        import soundfile as sf

        f = io.BytesIO(data_src) if isinstance(data_src, bytes) else str(data_src)
        x, sr_in = sf.read(f, dtype="float32", always_2d=True)
        mono = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)  # mean over one channel costs ms per minute
        x = _resample(mono.astype(np.float32), int(sr_in), sr)
    except Exception:
        x = _decode_ffmpeg(data_src, sr)
    if x.size == 0:
        raise AudioError("audio decodes to zero samples")
    if not np.isfinite(x).all():
        raise AudioError("audio contains NaN or infinite samples")
    if max_seconds is not None and x.size / sr > max_seconds:
        raise AudioError(f"audio is {x.size / sr:.1f} s long; the limit is {max_seconds:.0f} s (split it or raise the limit)")
    peak = float(np.abs(x).max())
    if peak > 1.0:
        x = x / peak
    return np.ascontiguousarray(x, dtype=np.float32)
