"""Classifier-free guidance on style, run as ONE batched forward per step.

Training drops the style code to a learned null token with probability ``null_prob``. At sampling the
conditional and unconditional branches are stacked on the batch axis, the network runs once, and
out = anchor + scale * (cond - anchor). At scale 1 the anchor branch is a no-op, so it is skipped (half
the work).

The anchor is the style that scale 0 gives. The engine passes the *neutral* preset's code when the model
has one (``sampling.guidance_anchor = "neutral"``, the default), so scale 0 is the neutral performance,
1 the chosen style and 2 the style exaggerated, like a negative prompt in image diffusion; with
``"null"`` it is the learned style-free token (the training-time dropout target), i.e. textbook CFG.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DenoiseFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t[B], style[B,S])


def guided(denoise: DenoiseFn, x_t: torch.Tensor, t: torch.Tensor, style: torch.Tensor,
           anchor: torch.Tensor, scale: float) -> torch.Tensor:
    """x0 prediction guided away from ``anchor`` (a style code [1, S]) towards ``style``; exactly one
    call of ``denoise``."""
    b = x_t.shape[0]
    if abs(scale - 1.0) < 1e-9 or torch.equal(style, anchor.expand(b, -1)):
        return denoise(x_t, t, style)  # guiding a style away from itself changes nothing
    if abs(scale) < 1e-9:
        return denoise(x_t, t, anchor.expand(b, -1))
    both = denoise(torch.cat([x_t, x_t]), torch.cat([t, t]),
                   torch.cat([style, anchor.expand(b, -1)]))
    cond, uncond = both[:b], both[b:]
    return uncond + scale * (cond - uncond)
