"""Style from audio alone: a small diffusion prior over the style code (x0-prediction, L2 loss).

Tokens: K pooled audio-encoder embeddings (the clip squeezed to K time chunks), one token of clip-level
log-mel statistics (voice colour, loudness dynamics), the diffusion-step token, the noisy style-code
token and a learned query token whose output is the clean-code prediction. Codes are standardised with
statistics of the training codes.

Guidance: training drops the audio condition (audio and stats tokens keep only their type embedding)
for a share of clips, so sampling can extrapolate away from the unconditional code (``guidance`` > 1,
both branches in one batched forward). Without it the prior hedges between emotions and its codes sit
near the corpus mean, i.e. near neutral. ``samples`` > 1 averages that many draws (one batch).

An emotion head reads a style code and names the emotion; it is trained on encoder codes and used to
report how often the predicted code carries the right emotion.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .features import sinusoid
from .samplers import make_sampler
from .schedule import NoiseSchedule


class StylePredictor(nn.Module):
    def __init__(self, audio_dim: int, stats_dim: int, style_dim: int, d: int, n_layers: int,
                 audio_tokens: int, n_emotions: int, train_steps: int = 1000) -> None:
        super().__init__()
        self.d = d
        self.audio_tokens = audio_tokens
        self.train_steps = train_steps
        self.a_in = nn.Linear(audio_dim, d)
        self.s_in = nn.Linear(stats_dim, d)
        self.c_in = nn.Linear(style_dim, d)
        self.t_in = nn.Linear(d, d)
        self.query = nn.Parameter(torch.zeros(1, 1, d))
        self.type_emb = nn.Parameter(torch.randn(5, d) * 0.02)  # audio, stats, step, code, query
        layer = nn.TransformerEncoderLayer(d, 4 if d % 4 == 0 else 1, 2 * d, 0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out = nn.Linear(d, style_dim)
        self.emotion_head = nn.Sequential(nn.Linear(style_dim, 64), nn.GELU(), nn.Linear(64, max(n_emotions, 1)))
        self.register_buffer("code_mean", torch.zeros(style_dim))
        self.register_buffer("code_std", torch.ones(style_dim))

    def pool_audio(self, audio_emb: torch.Tensor) -> torch.Tensor:
        """[B, T, d_audio] -> [B, K, d_audio] by chunk means."""
        return F.adaptive_avg_pool1d(audio_emb.transpose(1, 2), self.audio_tokens).transpose(1, 2)

    def forward(self, code_t: torch.Tensor, t: torch.Tensor, audio_tok: torch.Tensor,
                stats: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """code_t [B, S] noisy standardised code; audio_tok [B, K, Da]; stats [B, Ds] -> x0 code [B, S].
        ``keep`` [B] (bool): False drops that row's audio condition (the unconditional branch)."""
        B = code_t.shape[0]
        te = self.t_in(sinusoid(t.float() * (1000.0 / self.train_steps), self.d))
        a, st = self.a_in(audio_tok), self.s_in(stats)
        if keep is not None:
            k = keep.to(a.dtype)
            a, st = a * k[:, None, None], st * k[:, None]
        toks = torch.cat([
            a + self.type_emb[0],
            (st + self.type_emb[1])[:, None],
            (te + self.type_emb[2])[:, None],
            (self.c_in(code_t) + self.type_emb[3])[:, None],
            self.query.expand(B, -1, -1) + self.type_emb[4],
        ], dim=1)
        return self.out(self.encoder(toks)[:, -1])

    @torch.no_grad()
    def sample(self, audio_tok: torch.Tensor, stats: torch.Tensor, schedule: NoiseSchedule, steps: int,
               generator: torch.Generator, guidance: float = 1.0, samples: int = 1) -> torch.Tensor:
        """Predicted style codes [B, S] (in the style encoder's units); each the mean of ``samples`` draws."""
        B, n = audio_tok.shape[0], max(int(samples), 1)
        x_T = torch.randn(B * n, self.out.out_features, generator=generator).to(audio_tok.device)
        toks, st = audio_tok.repeat_interleave(n, 0), stats.repeat_interleave(n, 0)
        guided = abs(float(guidance) - 1.0) > 1e-6
        if guided:  # conditional and unconditional rows in one forward
            toks, st = torch.cat([toks, toks]), torch.cat([st, st])
            keep = torch.arange(2 * B * n, device=toks.device) < B * n

        def fn(x: torch.Tensor, t: int) -> torch.Tensor:
            if not guided:
                return self(x, torch.full((B * n,), t, dtype=torch.long, device=x.device), toks, st)
            both = self(torch.cat([x, x]), torch.full((2 * B * n,), t, dtype=torch.long, device=x.device),
                        toks, st, keep)
            cond, uncond = both.chunk(2)
            return uncond + float(guidance) * (cond - uncond)

        z = make_sampler("ddim", schedule, steps).sample(fn, x_T).view(B, n, -1).mean(1)
        return z * self.code_std + self.code_mean

    def emotion_logits(self, code: torch.Tensor) -> torch.Tensor:
        return self.emotion_head(code)


def prior_sampling(cfg: dict[str, Any]) -> dict[str, float | int]:
    """The prior's sampling settings from a model config (``sampling.style_guidance`` and
    ``sampling.style_samples``; checkpoints trained before guidance existed get 1 and 1)."""
    smp = cfg.get("sampling", {})
    return {"guidance": float(smp.get("style_guidance", 1.0)), "samples": int(smp.get("style_samples", 1))}
