"""Audio -> per-motion-frame feature rows, computed once per clip.

Default: log-mel (``motion_server.audio.mel``: librosa's mel spectrogram, no download). Mel frames come at ``sr/hop`` Hz (100 Hz at 16 kHz / 160); they
are interpolated to ``sub`` points per motion frame (sub=2 -> 60 Hz) and the ``sub`` rows of a frame are
concatenated, so each 30 fps frame keeps the finer timing inside it. Per-clip mean subtraction per mel
bin makes the features gain- and microphone-invariant (the corpus is synthetic voices; real speech
differs mostly in channel colour). Context of a few hundred ms is added by the audio encoder's dilated
convolutions, not here.

Optional: ``SSLSpeechEncoder``, a small wav2vec-like conv + transformer encoder loaded from a *local*
safetensors file (architecture in the file's metadata). Nothing is ever downloaded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

# runs ``fn`` over a batch of independent rows: fn(rows) -> rows
WindowRunner = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]


LOG_FLOOR = 1e-5
FEATURE_SCALE = 4.0  # log-mel deviations are ~±4; keeps the encoder input near unit scale


class FeatureError(ValueError):
    """Audio or feature settings unusable."""


def n_motion_frames(n_samples: int, sr: int, fps: float) -> int:
    """Motion frames for an audio of ``n_samples``: one per 1/fps second, at least 1."""
    return max(1, int(round(n_samples / sr * fps)))


def _frame_grid(n_frames: int, fps: float, sub: int) -> np.ndarray:
    """Times (s) of the ``sub`` feature points of every motion frame, centred on the frame time."""
    offs = (np.arange(sub) - (sub - 1) / 2.0) / (fps * sub)
    return (np.arange(n_frames)[:, None] / fps + offs[None, :]).reshape(-1)


def _interp_rows(t_new: np.ndarray, t_old: np.ndarray, a: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(t_old, t_new) - 1, 0, len(t_old) - 2)
    w = np.clip((t_new - t_old[idx]) / (t_old[idx + 1] - t_old[idx]), 0.0, 1.0)[:, None]
    return (a[idx] * (1 - w) + a[idx + 1] * w).astype(np.float32)


class LogMelFeatures:
    """log-mel rows aligned to the motion frame rate: ``__call__(audio) -> [T, sub * n_mels]``."""

    def __init__(self, cfg: dict[str, Any], fps: float) -> None:
        self.cfg = dict(cfg)
        self.sr = int(cfg["sr"])
        self.fps = float(fps)
        self.sub = int(cfg["sub"])
        self.dim = self.sub * int(cfg["n_mels"])

    def log_mel(self, audio: np.ndarray) -> np.ndarray:
        """[n_mel_frames, n_mels] natural-log mel power (no normalisation)."""
        from motion_server.audio.mel import mel_power

        c = self.cfg
        a = np.asarray(audio, np.float32)
        if a.ndim != 1:
            raise FeatureError(f"audio must be mono 1-D, got shape {list(a.shape)}")
        if not np.isfinite(a).all():
            raise FeatureError("audio contains NaN/inf samples")
        if len(a) < c["win"]:
            a = np.pad(a, (0, c["win"] - len(a)))
        mel = mel_power(a, self.sr, c["n_fft"], c["hop"], c["n_mels"], c["win"], c["fmin"], c["fmax"])
        return np.log(mel.T + LOG_FLOOR).astype(np.float32)

    def __call__(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        return self._rows(self.log_mel(audio), len(audio), n_frames)

    def clip_stats(self, audio: np.ndarray) -> np.ndarray:
        """Per-bin mean and std of the log-mel over the clip ([2 * n_mels]): voice colour and dynamics
        that the mean-subtracted frame features drop; the style predictor reads them."""
        return self._stats(self.log_mel(audio))

    def rows_and_stats(self, audio: np.ndarray, n_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(self(audio, n_frames), self.clip_stats(audio))`` from one log-mel (its cost, paid once)."""
        lm = self.log_mel(audio)
        return self._rows(lm, len(audio), n_frames), self._stats(lm)

    def _rows(self, lm: np.ndarray, n_samples: int, n_frames: int | None) -> np.ndarray:
        T = n_frames if n_frames is not None else n_motion_frames(n_samples, self.sr, self.fps)
        t_old = np.arange(len(lm)) * self.cfg["hop"] / self.sr
        if len(lm) < 2:
            lm = np.repeat(lm, 2, axis=0)
            t_old = np.array([0.0, 1.0 / self.fps])
        rows = _interp_rows(_frame_grid(T, self.fps, self.sub), t_old, lm)
        rows = (rows - rows.mean(axis=0, keepdims=True)) / FEATURE_SCALE
        return rows.reshape(T, self.dim)

    @staticmethod
    def _stats(lm: np.ndarray) -> np.ndarray:
        return np.concatenate([lm.mean(0) / 10.0, lm.std(0) / FEATURE_SCALE]).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Optional self-supervised speech encoder slot (local weights only).


class SSLSpeechEncoder(nn.Module):
    """A small wav2vec-style encoder: strided 1-D conv feature extractor on the waveform, then a
    transformer. Architecture keys (stored as JSON in the safetensors metadata under "config"):
    ``conv_channels``, ``conv_kernels``, ``conv_strides``, ``d_model``, ``n_layers``, ``n_heads``."""

    def __init__(self, conv_channels: list[int], conv_kernels: list[int], conv_strides: list[int],
                 d_model: int, n_layers: int, n_heads: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c, k, s in zip(conv_channels, conv_kernels, conv_strides, strict=True):
            layers += [nn.Conv1d(c_in, c, k, stride=s), nn.GELU()]
            c_in = c
        self.conv = nn.Sequential(*layers)
        self.proj = nn.Linear(c_in, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, 0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.stride = int(np.prod(conv_strides))
        self.out_dim = d_model

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, N] -> [B, N', d_model] at sr/stride Hz."""
        h = self.conv(wav[:, None, :]).transpose(1, 2)
        return self.encoder(self.proj(h))

    @classmethod
    def from_safetensors(cls, path: str | Path) -> SSLSpeechEncoder:
        from safetensors import safe_open
        from safetensors.torch import load_file

        p = Path(path)
        if not p.is_file():
            raise FeatureError(f"SSL speech encoder weights not found at {p}; give a local .safetensors file")
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
        if "config" not in meta:
            raise FeatureError(f"{p} has no 'config' metadata describing the encoder architecture")
        arch = json.loads(meta["config"])
        model = cls(**arch)
        state, own = load_file(str(p)), model.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or shapes:
            raise FeatureError(f"{p} does not match the encoder architecture in its metadata: missing "
                               f"{missing[:3]}, unexpected {unexpected[:3]}, wrong shape {shapes[:3]}")
        model.load_state_dict(state)
        return model.eval()


class SSLFeatures:
    """Same interface as ``LogMelFeatures`` but rows come from a local ``SSLSpeechEncoder``."""

    def __init__(self, cfg: dict[str, Any], fps: float) -> None:
        if not cfg.get("path"):
            raise FeatureError("features.kind 'ssl' needs features.path: a local safetensors encoder file")
        self.cfg = dict(cfg)
        self.sr = int(cfg["sr"])
        self.fps = float(fps)
        self.sub = int(cfg.get("sub", 2))
        self.encoder = SSLSpeechEncoder.from_safetensors(cfg["path"])
        self.dim = self.sub * self.encoder.out_dim
        self._mel = LogMelFeatures({**cfg, "n_mels": cfg.get("n_mels", 80)}, fps)

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        a = np.asarray(audio, np.float32)
        T = n_frames if n_frames is not None else n_motion_frames(len(a), self.sr, self.fps)
        need = self.encoder.stride * 4
        if len(a) < need:
            a = np.pad(a, (0, need - len(a)))
        h = self.encoder(torch.from_numpy(a)[None])[0].numpy()
        rate = self.sr / self.encoder.stride
        t_old = (np.arange(len(h)) + 0.5) / rate
        if len(h) < 2:
            h = np.repeat(h, 2, axis=0)
            t_old = np.array([0.0, 1.0 / rate])
        rows = _interp_rows(_frame_grid(T, self.fps, self.sub), t_old, h)
        return (rows - rows.mean(0, keepdims=True)).reshape(T, self.dim)

    def clip_stats(self, audio: np.ndarray) -> np.ndarray:
        return self._mel.clip_stats(audio)


class SpeechEncoderFeatures:
    """Rows of a pretrained speech encoder (``motion_server.model.speech_encoder``; Whisper's encoder) at
    the motion frame rate: the 50 Hz encoder frames are sampled at ``sub`` points inside each motion frame
    and averaged (a 30 fps frame spans 1.7 encoder frames). Not mean-removed: the encoder's layer norm
    already makes them level- and channel-robust."""

    def __init__(self, cfg: dict[str, Any], fps: float, run: WindowRunner | None = None) -> None:
        from .speech_encoder import load_speech_encoder

        if cfg.get("kind") != "whisper":
            raise FeatureError(f"unknown speech_encoder.kind {cfg.get('kind')!r}; TalkRig knows 'whisper'")
        self.cfg = dict(cfg)
        self.fps = float(fps)
        self.sub = 3
        # how a batch of encoder windows runs: on the CPU cores free at the time (device.CoreShare.run), or
        # packed with other jobs' windows (forward_packer.ForwardPacker.run, on a GPU); default: as is
        self.run = run
        self.encoder, self.sha256 = load_speech_encoder(str(cfg["weights"]), cfg.get("sha256"))
        self.dim = self.encoder.dim
        if int(cfg.get("dim", self.dim)) != self.dim:
            raise FeatureError(f"speech_encoder.dim is {cfg.get('dim')} but {cfg['weights']} gives {self.dim}")

    def to(self, device: torch.device) -> SpeechEncoderFeatures:
        self.encoder = self.encoder.to(device)
        return self

    def __call__(self, audio: np.ndarray, n_frames: int) -> np.ndarray:
        from .speech_encoder import encode_audio

        return self.rows(encode_audio(self.encoder, np.asarray(audio, np.float32), self.run), n_frames)

    def rows(self, h: np.ndarray, n_frames: int) -> np.ndarray:
        """[n_frames, dim] from 50 Hz encoder frames ``h`` (frame ``i`` centred on ``(i + 0.5) / 50`` s)."""
        from .speech_encoder import ENC_RATE

        t_old = (np.arange(len(h)) + 0.5) / ENC_RATE
        if len(h) < 2:
            h, t_old = np.repeat(h, 2, axis=0), np.array([0.0, 1.0 / ENC_RATE])
        rows = _interp_rows(_frame_grid(n_frames, self.fps, self.sub), t_old, h)
        return rows.reshape(n_frames, self.sub, self.dim).mean(axis=1)


class AudioFeatures:
    """What the model reads per motion frame: the ``features`` rows (log-mel), followed, when the
    checkpoint has a ``speech_encoder`` section, by the speech encoder's rows."""

    def __init__(self, cfg: dict[str, Any], fps: float, speech: dict[str, Any] | None = None,
                 run: WindowRunner | None = None) -> None:
        kinds = {"logmel": LogMelFeatures, "ssl": SSLFeatures}
        kind = cfg.get("kind", "logmel")
        if kind not in kinds:
            raise FeatureError(f"unknown features.kind {kind!r}; choose one of {sorted(kinds)}")
        self.base = kinds[kind](cfg, fps)
        self.speech = SpeechEncoderFeatures(speech, fps, run) if speech else None
        self.sr = self.base.sr
        self.dim = self.base.dim + (self.speech.dim if self.speech else 0)

    def to(self, device: torch.device) -> AudioFeatures:
        if self.speech is not None:
            self.speech.to(device)
        return self

    def __call__(self, audio: np.ndarray, n_frames: int | None = None) -> np.ndarray:
        return self.rows_and_stats(audio, n_frames)[0]

    def rows_and_stats(self, audio: np.ndarray, n_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(self(audio, n_frames), self.clip_stats(audio))``, computing the log-mel once where the
        front end reads it for both."""
        T = n_frames if n_frames is not None else n_motion_frames(len(audio), self.sr, self.fps)
        if isinstance(self.base, LogMelFeatures):
            rows, stats = self.base.rows_and_stats(audio, T)
        else:
            rows, stats = self.base(audio, n_frames=T), self.base.clip_stats(audio)
        if self.speech is not None:
            rows = np.concatenate([rows, self.speech(audio, T)], axis=1).astype(np.float32)
        return rows, stats

    @property
    def fps(self) -> float:
        return self.base.fps

    def clip_stats(self, audio: np.ndarray) -> np.ndarray:
        return self.base.clip_stats(audio)


def make_features(cfg: dict[str, Any], fps: float, speech: dict[str, Any] | None = None,
                  run: WindowRunner | None = None) -> AudioFeatures:
    """The feature rows of a model config: ``cfg`` = its ``features`` section, ``speech`` = its optional
    ``speech_encoder`` section."""
    return AudioFeatures(cfg, fps, speech, run)


def clip_stats_dim(cfg: dict[str, Any]) -> int:
    return 2 * int(cfg.get("n_mels", 80))


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of a float tensor [B] -> [B, dim] (diffusion step / position)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    ang = t.float()[:, None] * freqs[None]
    return torch.cat([ang.sin(), ang.cos()], dim=-1)
