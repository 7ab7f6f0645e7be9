"""Property-based fuzzing of what a peer controls before any engine runs: audio headers (WAV and FLAC
with random rates, channels, sample sizes and claimed lengths) and style reference clips (random fps
and frame counts). Every input is either refused with a one-line AudioError / ProtocolError or
decoded within the caller's limit, and nothing allocates more than the input justifies. Bounded in
examples so it runs in seconds (CI)."""

from __future__ import annotations

import io
import math
import resource
import struct
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motion_server import protocol as P
from motion_server.audio import AudioError, load_audio

MAX_S = 5.0
SR = 16000
# examples that libsndfile cannot open go to ffprobe/ffmpeg (a process each): keep those counts small
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
FUZZ_WAV = settings(FUZZ, max_examples=80)
FUZZ_FLAC = settings(FUZZ, max_examples=40)

u32 = st.one_of(st.sampled_from([0, 1, 3999, 4000, 8000, 16000, 44100, 48000, 384000, 384001, 100_000_000,
                                 0x7FFFFFFF, 0xFFFFFFFF]), st.integers(0, 0xFFFFFFFF))
u16 = st.one_of(st.sampled_from([0, 1, 2, 8, 16, 24, 32, 33, 64, 0xFFFF]), st.integers(0, 0xFFFF))


def _maxrss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM; ru_maxrss where /proc is missing)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _check(data: bytes) -> None:
    try:
        x = load_audio(data, sr=SR, max_seconds=MAX_S, timeout_s=10)
    except AudioError as e:
        assert str(e) and "\n" not in str(e)
        return
    assert x.dtype == np.float32 and x.ndim == 1 and 0 < x.size <= MAX_S * SR + SR // 100
    assert np.isfinite(x).all() and np.abs(x).max() <= 1.0


@FUZZ_WAV
@given(rate=u32, channels=u16, bits=u16, tag=st.sampled_from([1, 3, 6, 7, 0xFFFE, 0x55, 0]),
       data_len=st.one_of(st.none(), u32), payload=st.binary(max_size=4096), byte_rate=st.one_of(st.none(), u32))
def test_fuzzed_wav_headers(rate, channels, bits, tag, data_len, payload, byte_rate) -> None:
    block = (channels * bits // 8) & 0xFFFF
    br = (rate * block) & 0xFFFFFFFF if byte_rate is None else byte_rate
    n = len(payload) if data_len is None else data_len
    data = (b"RIFF" + struct.pack("<I", (36 + n) & 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
            + struct.pack("<HHIIHH", tag, channels, rate, br, block, bits) + b"data" + struct.pack("<I", n) + payload)
    before = _maxrss_mb()
    _check(data)
    assert _maxrss_mb() - before < 200, "a header made the decoder allocate far beyond its input"


def _flac_template() -> bytes:
    b = io.BytesIO()
    sf.write(b, (0.1 * np.sin(np.arange(4000) / 5)).astype(np.float32), 16000, format="FLAC")
    return b.getvalue()


FLAC = _flac_template()


@FUZZ_FLAC
@given(rate=st.one_of(st.sampled_from([0, 1, 3999, 8000, 16000, 48000, 384000, 655350, (1 << 20) - 1]),
                      st.integers(0, (1 << 20) - 1)),
       channels=st.integers(1, 8), bps=st.integers(4, 32),
       total=st.one_of(st.sampled_from([0, 1, 4000, 16000 * 600, (1 << 36) - 1]), st.integers(0, (1 << 36) - 1)),
       cut=st.integers(0, len(FLAC)))
def test_fuzzed_flac_streaminfo(rate, channels, bps, total, cut) -> None:
    # STREAMINFO after "fLaC" + a 4-byte block header: 10 bytes of block/frame sizes, then 20 bits of
    # rate, 3 of channels - 1, 5 of bits - 1, 36 of total samples
    packed = (rate << 44) | ((channels - 1) << 41) | ((bps - 1) << 36) | total
    data = bytearray(FLAC)
    data[18:26] = packed.to_bytes(8, "big")
    before = _maxrss_mb()
    _check(bytes(data[: max(cut, 42)]))
    assert _maxrss_mb() - before < 200


# -- style references --------------------------------------------------------------------------------

fps_values = st.one_of(st.sampled_from([2e-6, 1e-300, 0.0, -1.0, 0.999, 1.0, 30.0, 240.0, 240.001, 1e308,
                                        float("inf"), float("nan")]), st.floats(allow_nan=True))


@FUZZ
@given(fps=fps_values, frames=st.integers(0, 64), claimed=st.one_of(st.none(), st.integers(0, 1 << 31)))
def test_fuzzed_style_references(fps, frames, claimed) -> None:
    """Decoded like the server decodes a peer's clip, then cut and resampled by the diffusion engine's
    own encode_reference (with a stub model): bounded work whatever the fps and length claim."""
    frames_list: list = []
    w = np.random.default_rng(0).random((frames, 52), dtype=np.float32)
    ref = {"fps": fps, "weights": P.encode_array(w, frames_list), "head": P.encode_array(np.zeros((frames, 6), np.float32),
                                                                                         frames_list), "meta": {}}
    if claimed is not None:
        ref["weights"]["shape"] = [claimed, 52]
    try:
        m = P.decode_motion(ref, frames_list, "style_reference", fps_range=P.STYLE_REFERENCE_FPS,
                            max_frames=P.STYLE_REFERENCE_MAX_FRAMES)
    except P.ProtocolError as e:
        assert e.code in ("bad_value", "too_large", "bad_type") and "\n" not in e.message
        return
    assert 1.0 <= m.fps <= 240.0 and m.n_frames <= P.STYLE_REFERENCE_MAX_FRAMES
    seen = _encode_reference(m)
    if seen is not None:
        assert seen.shape[0] <= 256 and seen.shape[1] == 58


def _encode_reference(motion):
    torch = pytest.importorskip("torch")
    from motion_server.model.engine import DiffusionEngine

    captured = {}

    def normalize(x):
        captured["x"] = x
        return x

    stub = SimpleNamespace(fps=30.0, device="cpu", model=SimpleNamespace(
        style_encoder=SimpleNamespace(max_frames=256), normalize=normalize,
        encode_style=lambda x: torch.zeros((1, 8))))
    try:
        DiffusionEngine.encode_reference(stub, motion)
    except ValueError as e:
        if "at least 2 frames" in str(e):
            return None
        raise
    return captured["x"].numpy()


def test_style_reference_cut_happens_before_resampling() -> None:
    """Finding 3: 2 frames at a tiny fps are hours long once resampled; at 1 fps (the lowest accepted)
    the engine resamples only the seconds its encoder reads."""
    from rig_mapping import FaceMotion

    long_slow = FaceMotion.neutral(100_000, fps=1.0)  # 28 hours at 1 fps
    x = _encode_reference(long_slow)
    assert x is not None and x.shape == (256, 58)
    with pytest.raises(ValueError, match="fps"):
        _encode_reference(FaceMotion.neutral(2, fps=2e-6))
    assert math.isfinite(P.STYLE_REFERENCE_FPS[1])
