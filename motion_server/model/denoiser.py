"""The denoising network: noisy motion window + per-frame audio embedding + style code + diffusion step
-> clean motion x0 (52 ARKit weights + 6 head channels, normalised), all channels jointly (so blinks and
head pose come from the same network as the mouth).

Unlike DreamTalk, where each frame is denoised on its own, frames attend to each other inside a window
(a few seconds; long audio is cut into overlapping windows, see ``long.py``). A depthwise temporal
convolution in every layer gives relative position, so any window length works. Step and style enter
through adaptive layer norm (per-layer scale/shift), which keeps the style signal strong for guidance.

Outside training, a row's output never depends on which other rows share its batch (the motion server
packs windows of several jobs into one forward, and a job must get the same numbers as when run alone):
every per-token operation is row-independent on the CPU, and the per-sample conditioning MLPs, whose
matrix products BLAS computes differently for different batch sizes, run once per distinct (step, style)
pair on a single row (also cheaper: all windows of a job share them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .features import sinusoid


class _Block(nn.Module):
    def __init__(self, d: int, n_heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.conv_norm = nn.LayerNorm(d)
        self.dwconv = nn.Conv1d(d, d, 5, padding=2, groups=d)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False)
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Linear(ff_mult * d, d))
        self.mod = nn.Linear(d, 4 * d)
        self.drop = nn.Dropout(dropout)
        self.dropout = dropout
        nn.init.zeros_(self.mod.weight)
        nn.init.zeros_(self.mod.bias)

    def forward(self, h: torch.Tensor, mod: torch.Tensor) -> torch.Tensor:
        """h [B, T, D]; mod [B, 4D]: this block's ``self.mod`` of the conditioning (see Denoiser)."""
        B, T, D = h.shape
        h = h + self.dwconv(self.conv_norm(h).transpose(1, 2)).transpose(1, 2)
        sh1, sc1, sh2, sc2 = mod.unsqueeze(1).chunk(4, dim=-1)
        a = self.norm1(h) * (1 + sc1) + sh1
        q, k, v = self.qkv(a).view(B, T, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        h = h + self.drop(self.proj(att.transpose(1, 2).reshape(B, T, D)))
        f = self.norm2(h) * (1 + sc2) + sh2
        return h + self.drop(self.ff(f))


class Denoiser(nn.Module):
    def __init__(self, motion_dim: int, d_model: int, style_dim: int, n_layers: int, n_heads: int,
                 ff_mult: int, dropout: float = 0.1, train_steps: int = 1000) -> None:
        super().__init__()
        self.d_model = d_model
        self.train_steps = train_steps
        self.x_in = nn.Linear(motion_dim, d_model)
        self.a_in = nn.Linear(d_model, d_model)
        self.t_mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.s_mlp = nn.Sequential(nn.Linear(style_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.blocks = nn.ModuleList(_Block(d_model, n_heads, ff_mult, dropout) for _ in range(n_layers))
        self.out_norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, motion_dim)

    def forward(self, x_t: torch.Tensor, audio: torch.Tensor, t: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        """x_t [B, W, C], audio [B, W, d] (audio-encoder output), t [B] long, style [B, S] -> x0 [B, W, C]."""
        c, mods = self._conditioning(t, style) if self.training else self._conditioning_rowwise(t, style)
        h = self.x_in(x_t) + self.a_in(audio) + c.unsqueeze(1)
        for blk, mod in zip(self.blocks, mods, strict=True):
            h = blk(h, mod)
        return self.out(self.out_norm(h))

    def _conditioning(self, t: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(c [B, d] added to every token, each block's modulation [B, 4d])."""
        c = self.t_mlp(sinusoid(t.float() * (1000.0 / self.train_steps), self.d_model)) + self.s_mlp(style)
        act = F.silu(c)
        return c, [blk.mod(act) for blk in self.blocks]

    def _conditioning_rowwise(self, t: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``_conditioning`` computed on one row per distinct (t, style), then spread to the rows."""
        key = torch.cat([t.to(style.dtype)[:, None], style], dim=1)
        distinct, where = torch.unique(key, dim=0, return_inverse=True)
        rows = [self._conditioning(t[i: i + 1], style[i: i + 1])
                for i in (int((where == k).nonzero()[0]) for k in range(distinct.shape[0]))]
        c = torch.cat([r[0] for r in rows])[where]
        mods = [torch.cat([r[1][b] for r in rows])[where] for b in range(len(self.blocks))]
        return c, mods
