"""Audio feature rows [B, T, F] -> per-frame content embeddings [B, T, d].

Residual dilated 1-D convolutions (dilations 1, 2, 4, 8, ...): each output frame sees about ±0.5 s of
audio at 30 fps, enough for coarticulation (the mouth anticipates upcoming phones). Convolution runs
over the whole clip once, so windows cut later have no audio edge effects and the cost is paid once per
clip, not per diffusion step.
"""

from __future__ import annotations

import torch
from torch import nn


class _DilatedBlock(nn.Module):
    def __init__(self, d: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.conv = nn.Conv1d(d, d, 3, padding=dilation, dilation=dilation)
        self.pw = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.norm(x).transpose(1, 2)).transpose(1, 2)
        return x + self.drop(self.pw(torch.nn.functional.gelu(h)))


class AudioEncoder(nn.Module):
    def __init__(self, in_dim: int, d_model: int, n_blocks: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, d_model)
        self.blocks = nn.ModuleList(_DilatedBlock(d_model, 2 ** (i % 5), dropout) for i in range(n_blocks))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = self.inp(feats)
        for b in self.blocks:
            h = b(h)
        return self.norm(h)
