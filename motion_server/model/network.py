"""The model container: audio encoder + style encoder + denoiser + lip expert + style predictor, the
motion normalisation statistics, the learned null-style token and the bundled style presets."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import MOTION_DIM
from .audio_encoder import AudioEncoder
from .closure_detector import ClosureDetector
from .config import reads_phones
from .denoiser import Denoiser
from .features import FeatureError, clip_stats_dim
from .lip_expert import LipExpert
from .schedule import make_schedule
from .style_encoder import StyleEncoder
from .style_predictor import StylePredictor

STD_FLOOR = 0.01


def feature_dim(cfg: dict[str, Any]) -> int:
    """Width of the per-frame audio rows of a model config: its ``features`` (+ ``speech_encoder``)."""
    fcfg = cfg["features"]
    if fcfg.get("kind", "logmel") == "logmel":
        n = int(fcfg["sub"]) * int(fcfg["n_mels"])
    elif "out_dim" not in fcfg:
        raise FeatureError("features.kind 'ssl' needs features.out_dim (the encoder's d_model)")
    else:
        n = int(fcfg["sub"]) * int(fcfg["out_dim"])
    speech = cfg.get("speech_encoder")
    return n + (int(speech["dim"]) if speech else 0)


class TalkRigModel(nn.Module):
    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.cfg = cfg
        m, le, sp = cfg["model"], cfg["lip_expert"], cfg["style_predictor"]
        d, S = m["d_model"], m["style_dim"]
        F_dim = feature_dim(cfg)
        n_steps = int(cfg["diffusion"].get("train_steps", 1000))
        self.schedule = make_schedule(cfg["diffusion"])
        self.audio_encoder = AudioEncoder(F_dim, d, m["audio_blocks"], m["dropout"])
        self.style_encoder = StyleEncoder(MOTION_DIM, d, S, m["style_layers"], m["n_heads"],
                                          m["style_max_frames"], m["dropout"])
        self.denoiser = Denoiser(MOTION_DIM, d, S, m["n_layers"], m["n_heads"], m["ff_mult"], m["dropout"], n_steps)
        self.lip_expert = LipExpert(F_dim, MOTION_DIM, le["d"], le["style_dim"], le["frames"])
        self.style_predictor = StylePredictor(d, clip_stats_dim(cfg["features"]), S, sp["d"], sp["layers"],
                                              sp["audio_tokens"], len(cfg.get("emotions", [])), n_steps)
        self.null_style = nn.Parameter(torch.randn(S) * 0.02)
        # optional phone track (``cfg["phones"]``): index 0 = unknown embeds to zero, so audio-only
        # generation is unchanged by the track's existence; zero-initialised so a model grown from a
        # checkpoint without it starts out identical
        self.phone_embed: nn.Embedding | None = None
        if reads_phones(cfg):
            self.phone_embed = nn.Embedding(len(cfg["phones"]["symbols"]) + 1, d, padding_idx=0)
            nn.init.zeros_(self.phone_embed.weight)
        # optional lip-closure detector (``cfg["closure_detector"]``): audio-only runs shut the lips
        # where it fires, through the same constraint a transcript's bilabials use
        self.closure_detector: ClosureDetector | None = None
        if cfg.get("closure_detector"):
            speech = cfg.get("speech_encoder")
            self.closure_detector = ClosureDetector(F_dim, cfg["closure_detector"],
                                                    int(speech["dim"]) if speech else 0)
        self.register_buffer("motion_mean", torch.zeros(MOTION_DIM))
        self.register_buffer("motion_std", torch.ones(MOTION_DIM))
        self.register_buffer("presets", torch.zeros(len(cfg.get("presets", [])), S))

    # -- normalisation ----------------------------------------------------------------------------
    def set_motion_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.motion_mean.copy_(mean)
        self.motion_std.copy_(std.clamp(min=STD_FLOOR))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.motion_mean) / self.motion_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.motion_std + self.motion_mean

    # -- parts ------------------------------------------------------------------------------------
    def encode_audio(self, feats: torch.Tensor) -> torch.Tensor:
        return self.audio_encoder(feats)

    def with_phones(self, audio_emb: torch.Tensor, phones: torch.Tensor | None) -> torch.Tensor:
        """The denoiser's conditioning: audio embedding [B, T, d] plus the phone track's embedding
        ([B, T] indices, 0 = unknown) when the model has one and a track is given."""
        if self.phone_embed is None or phones is None:
            return audio_emb
        return audio_emb + self.phone_embed(phones.to(audio_emb.device))

    def closure_probability(self, feats: torch.Tensor) -> torch.Tensor | None:
        """Per-frame probability [B, T] that the lips are shut for a /p b m/, from the feature rows;
        None when the model has no closure detector."""
        if self.closure_detector is None:
            return None
        return torch.sigmoid(self.closure_detector(feats))

    @property
    def phone_symbols(self) -> list[str]:
        return list(self.cfg["phones"]["symbols"]) if reads_phones(self.cfg) else []

    def encode_style(self, motion_norm: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        return self.style_encoder(motion_norm, pad)

    def denoise(self, x_t: torch.Tensor, audio_emb: torch.Tensor, t: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.denoiser(x_t, audio_emb, t, style)

    def preset_names(self) -> list[str]:
        return list(self.cfg.get("presets", []))

    def preset(self, name: str) -> torch.Tensor:
        names = self.preset_names()
        if name not in names:
            raise ValueError(f"unknown style preset {name!r}; this model has: {', '.join(names) or 'none'}")
        return self.presets[names.index(name)]
