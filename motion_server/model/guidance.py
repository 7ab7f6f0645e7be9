"""Classifier-free guidance on style, run as ONE batched forward per step.

Training drops the style code to a learned null token with probability ``null_prob``. At sampling the
conditional and unconditional branches are stacked on the batch axis (with other windows and other jobs'
windows: see ``batching.py``), the network runs once, and
out = anchor + scale * (cond - anchor). At scale 1 the anchor branch is a no-op, so it is skipped (half
the work).

The anchor is the style that scale 0 gives. The engine passes the *neutral* preset's code when the model
has one (``sampling.guidance_anchor = "neutral"``, the default), so scale 0 is the neutral performance,
1 the chosen style and 2 the style exaggerated, like a negative prompt in image diffusion; with
``"null"`` it is the learned style-free token (the training-time dropout target), i.e. textbook CFG.
"""

from __future__ import annotations

import torch


def branches(style: torch.Tensor, anchor: torch.Tensor, scale: float) -> list[torch.Tensor]:
    """The style codes ([1, S] each) the network must see for one guided prediction: the style alone at
    scale 1 (or when it is the anchor), the anchor alone at scale 0, else both."""
    if abs(scale - 1.0) < 1e-9 or torch.equal(style, anchor):
        return [style]  # guiding a style away from itself changes nothing
    if abs(scale) < 1e-9:
        return [anchor]
    return [style, anchor]


def combine(outs: list[torch.Tensor], scale: float) -> torch.Tensor:
    """The guided x0 from the network's outputs for ``branches(...)``, in that order."""
    if len(outs) == 1:
        return outs[0]
    cond, uncond = outs
    return uncond + scale * (cond - uncond)
