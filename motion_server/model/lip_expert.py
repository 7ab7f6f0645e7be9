"""Style-aware lip-sync expert: does this mouth motion fit this audio, for this speaking style?

Two small 1-D conv encoders (audio feature rows; mouth/jaw channels) over a short window (~0.5 s). A
style vector from the reference clip (its own tiny encoder, not shared with the denoiser) is
concatenated into the intermediate features of both, so a wide-mouthed and a mumbling style are judged
by their own standard. Score = learned scale * cosine(audio, mouth) + bias -> sync probability. Trained
with BCE on in-sync vs time-shifted pairs, then frozen and used as a loss on the denoiser's x0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rig_mapping.arkit import ARKIT_INDEX, MOUTH_CHANNELS

MOUTH_IDX: tuple[int, ...] = tuple(ARKIT_INDEX[n] for n in MOUTH_CHANNELS)


class StatsStyleEncoder(nn.Module):
    """Reference clip -> small style vector from per-channel mean, spread and speed (masked)."""

    def __init__(self, motion_dim: int, style_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3 * motion_dim, 4 * style_dim), nn.GELU(),
                                 nn.Linear(4 * style_dim, style_dim))

    def forward(self, motion: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        valid = torch.ones(motion.shape[:2], device=motion.device) if pad is None else (~pad).float()
        n = valid.sum(1, keepdim=True).clamp(min=1)[..., None]
        v = valid[..., None]
        mean = (motion * v).sum(1, keepdim=True) / n
        std = (((motion - mean) ** 2 * v).sum(1, keepdim=True) / n).sqrt()
        vel = torch.diff(motion, dim=1, prepend=motion[:, :1]).abs()
        speed = (vel * v).sum(1, keepdim=True) / n
        return self.net(torch.cat([mean, std, speed], dim=-1).squeeze(1))


class _Branch(nn.Module):
    def __init__(self, in_dim: int, d: int, style_dim: int) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, d)
        self.c1 = nn.Conv1d(d + style_dim, d, 3, padding=1)
        self.c2 = nn.Conv1d(d + style_dim, d, 3, padding=2, dilation=2)
        self.out = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.inp(x)).transpose(1, 2)  # [B, d, W]
        sw = s[:, :, None].expand(-1, -1, h.shape[-1])
        h = F.gelu(self.c1(torch.cat([h, sw], 1)))
        h = h + F.gelu(self.c2(torch.cat([h, sw], 1)))
        return self.out(h.mean(-1))


class LipExpert(nn.Module):
    def __init__(self, feat_dim: int, motion_dim: int, d: int, style_dim: int, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.style = StatsStyleEncoder(motion_dim, style_dim)
        self.audio = _Branch(feat_dim, d, style_dim)
        self.mouth = _Branch(len(MOUTH_IDX), d, style_dim)
        self.scale = nn.Parameter(torch.tensor(5.0))
        self.bias = nn.Parameter(torch.tensor(-2.0))
        self.register_buffer("mouth_idx", torch.tensor(MOUTH_IDX), persistent=False)

    def logits(self, feats: torch.Tensor, motion: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """feats [B, W, F] audio rows, motion [B, W, C] normalised motion (mouth taken from it),
        style [B, S] from ``self.style``. Returns sync logits [B]."""
        ea = self.audio(feats, style)
        em = self.mouth(motion[..., self.mouth_idx], style)
        return self.scale * F.cosine_similarity(ea, em, dim=-1) + self.bias

    def sync_loss(self, feats: torch.Tensor, motion: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """-log P(sync) for pairs that should be in sync (the denoiser's loss term)."""
        return F.softplus(-self.logits(feats, motion, style)).mean()


def shifted_pairs(feats: torch.Tensor, motion: torch.Tensor, frames: int, min_shift: int, max_shift: int,
                  gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """From aligned windows [B, L, *] with L >= frames + 2*max_shift, cut a positive (aligned) or a
    negative (motion shifted by min..max frames either way) pair per row. Returns feats, motion, labels."""
    B, L = feats.shape[:2]
    centre = (L - frames) // 2
    label = (torch.rand(B, generator=gen) < 0.5).float()
    mag = torch.randint(min_shift, max_shift + 1, (B,), generator=gen)
    sign = torch.where(torch.rand(B, generator=gen) < 0.5, -1, 1)
    shift = torch.where(label > 0, torch.zeros_like(mag), mag * sign)
    fa = torch.stack([feats[i, centre: centre + frames] for i in range(B)])
    mo = torch.stack([motion[i, centre + int(shift[i]): centre + int(shift[i]) + frames] for i in range(B)])
    return fa, mo, label
