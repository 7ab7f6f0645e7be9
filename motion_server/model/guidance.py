"""Classifier-free guidance on style, run as ONE batched forward per step.

Training drops the style code to a learned null token with probability ``null_prob``. At sampling the
conditional and unconditional branches are stacked on the batch axis, the network runs once, and
out = uncond + scale * (cond - uncond). At scale 1 the unconditional branch equals no-op, so it is
skipped (half the work); scale 0 gives the style-free (null) motion.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t[B], style[B,S])


def guided(denoise: DenoiseFn, x_t: torch.Tensor, t: torch.Tensor, style: torch.Tensor,
           null_style: torch.Tensor, scale: float) -> torch.Tensor:
    """x0 prediction with classifier-free guidance; exactly one call of ``denoise``."""
    if abs(scale - 1.0) < 1e-9:
        return denoise(x_t, t, style)
    b = x_t.shape[0]
    both = denoise(torch.cat([x_t, x_t]), torch.cat([t, t]),
                   torch.cat([style, null_style.expand(b, -1)]))
    cond, uncond = both[:b], both[b:]
    return uncond + scale * (cond - uncond)
