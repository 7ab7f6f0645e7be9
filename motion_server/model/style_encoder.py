"""Reference motion clip (ARKit weights + head, up to ~10 s) -> style code.

Input rows are the normalised motion and its frame-to-frame change (the change carries speed, blink
and head-motion habits). A small pre-norm transformer with a key-padding mask, then attention pooling
(a learned score per frame, softmax over valid frames) gives one vector per clip.
"""

from __future__ import annotations

import torch
from torch import nn

from .features import sinusoid


class AttentionPool(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.score = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, 1))

    def forward(self, h: torch.Tensor, pad: torch.Tensor | None) -> torch.Tensor:
        s = self.score(h).squeeze(-1)
        if pad is not None:
            s = s.masked_fill(pad, float("-inf"))
        w = torch.softmax(s, dim=1)
        return (w.unsqueeze(-1) * h).sum(1)


class StyleEncoder(nn.Module):
    def __init__(self, motion_dim: int, d_model: int, style_dim: int, n_layers: int, n_heads: int,
                 max_frames: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.max_frames = max_frames
        self.inp = nn.Linear(2 * motion_dim, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, 2 * d_model, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.pool = AttentionPool(d_model)
        self.out = nn.Linear(d_model, style_dim)

    def forward(self, motion: torch.Tensor, pad: torch.Tensor | None = None) -> torch.Tensor:
        """motion [B, L, C] normalised; pad [B, L] True where padded. Returns [B, style_dim]."""
        motion = motion[:, : self.max_frames]
        if pad is not None:
            pad = pad[:, : self.max_frames]
        vel = torch.diff(motion, dim=1, prepend=motion[:, :1])
        h = self.inp(torch.cat([motion, vel * 4.0], dim=-1))
        pos = sinusoid(torch.arange(h.shape[1], device=h.device), h.shape[-1])
        h = self.encoder(h + 0.1 * pos[None], src_key_padding_mask=pad)
        return self.out(self.pool(h, pad))


def pad_clips(clips: list[torch.Tensor], max_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack variable-length [L, C] clips (cut to max_frames) into [B, L, C] + pad mask [B, L]."""
    clips = [c[:max_frames] for c in clips]
    L = max(len(c) for c in clips)
    out = clips[0].new_zeros(len(clips), L, clips[0].shape[-1])
    pad = torch.ones(len(clips), L, dtype=torch.bool, device=clips[0].device)
    for i, c in enumerate(clips):
        out[i, : len(c)] = c
        pad[i, : len(c)] = False
    return out, pad
