"""Constraints applied to the x0 prediction at every sampling step (in-painting style).

With a transcript the bilabials' times are known, and the lips must be shut over the middle of every
/p b m/. The network learns this from the phone track but can still miss the shortest ones (30-50 ms,
one frame at 30 fps). The closure constraint writes the closed-lip pose (the same ARKit rule the
procedural performer uses: no lip-opening channel, mouthClose just above jawOpen, a little press) into
the x0 prediction over each bilabial's window at every step; the sampler then re-noises that x0, so the
network shapes the frames around each closure to fit it, instead of a pose pasted on afterwards.
Switched by the checkpoint's ``sampling.enforce_closures``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from motion_server.performer.coarticulation import bilabial_windows, enforce_bilabial_closure
from motion_server.phones import Phone

Constraint = Callable[[torch.Tensor], torch.Tensor]  # x0 [B, T, C] (normalised) -> x0


def closure_constraint(phones: Sequence[Phone], n_frames: int, fps: float,
                       normalize: Callable[[torch.Tensor], torch.Tensor],
                       denormalize: Callable[[torch.Tensor], torch.Tensor]) -> Constraint | None:
    """A constraint shutting the lips over each P/B/M of ``phones``; None when there is none."""
    window = bilabial_windows(phones, n_frames, fps)
    if not window.any():
        return None
    frames = torch.from_numpy(np.flatnonzero(window > 0))

    def apply(x0: torch.Tensor) -> torch.Tensor:
        raw = denormalize(x0)
        for b in range(raw.shape[0]):
            w = raw[b, :, :52].clamp(0, 1).cpu().numpy()
            shut = enforce_bilabial_closure(w, phones, fps)
            raw[b, frames, :52] = torch.from_numpy(shut[frames.numpy()]).to(raw)
        out = x0.clone()  # frames outside the windows stay bit-exact
        out[:, frames, :52] = normalize(raw)[:, frames, :52]
        return out

    return apply
