"""Temporal smoothing of the slow channel groups after sampling, and their variance restored.

A few-step sampler leaves a little frame-to-frame noise in every channel. Lips must stay sharp (a
closure lasts two or three frames), but head pose, brows, cheeks and nose move slowly in real
performances, and there the leftover noise reads as jitter. Each group named in the checkpoint's
``postprocess.smooth_s`` gets a Gaussian of that standard deviation (seconds); groups are
``rig_mapping.arkit.GROUP_INDICES`` names plus ``head`` (all six pose channels).
"""

from __future__ import annotations

import numpy as np

from motion_server.dsp import gaussian_filter1d
from rig_mapping.arkit import GROUP_INDICES


def _group_channels(group: str, setting: str) -> list[int] | None:
    """The weight columns of ``group`` (None for ``head``: the six pose channels); an unknown name is an
    error naming ``setting``."""
    if group == "head":
        return None
    if group not in GROUP_INDICES:
        raise ValueError(f"{setting}: unknown group {group!r}; use head or one of {', '.join(GROUP_INDICES)}")
    return list(GROUP_INDICES[group])


def smooth_groups(weights: np.ndarray, head: np.ndarray, fps: float,
                  smooth_s: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``weights`` [T, 52] and ``head`` [T, 6] with the named groups smoothed."""
    w = np.array(weights, np.float32, copy=True)
    h = np.array(head, np.float32, copy=True)
    for group, seconds in smooth_s.items():
        idx = _group_channels(group, "postprocess.smooth_s")
        sigma = float(seconds) * fps
        if sigma <= 0 or len(w) < 3:
            continue
        if idx is None:
            h = gaussian_filter1d(h, sigma, axis=0, mode="nearest").astype(np.float32)
        else:
            w[:, idx] = gaussian_filter1d(w[:, idx], sigma, axis=0, mode="nearest")
    return w, h


def scale_groups(weights: np.ndarray, head: np.ndarray, gains: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Copies with each named group's motion about its clip mean scaled by its gain
    (``postprocess.variance_gain``, fitted by ``talkrig train --stage expressiveness`` on held-out data):
    a few-step sampler settles the channels that the audio leaves open (head, brows) near their average
    and they come out calmer than the training targets; the gain gives back the targets' spread."""
    w = np.array(weights, np.float32, copy=True)
    h = np.array(head, np.float32, copy=True)
    for group, gain in gains.items():
        idx = _group_channels(group, "postprocess.variance_gain")
        g = float(gain)
        if g == 1.0 or len(w) < 2:
            continue
        if idx is None:
            h = (h.mean(axis=0) + g * (h - h.mean(axis=0))).astype(np.float32)
        else:
            mu = w[:, idx].mean(axis=0)
            w[:, idx] = np.clip(mu + g * (w[:, idx] - mu), 0.0, 1.0)
    return w, h

