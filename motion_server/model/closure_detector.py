"""Lip-closure detector: where in the audio alone are the lips shut for a /p b m/?

Without a transcript the denoiser has to infer closures from sound, and on real voices it misses a
fifth of them: a closure is silent (the stop's hold) or nasal, and a short one leaves little trace. A
dedicated frame classifier over the same feature rows the audio encoder reads (log-mel + the speech
encoder) is a much easier problem than generating the whole face, and with a pretrained speech encoder
it carries over from synthetic to real voices (issue 18's measurement: ROC AUC 0.92 on unheard
speakers). Its detections become bilabial events that the same in-painting constraint a transcript
uses shuts the lips over (``constraints.closure_constraint``), so audio-only and transcript runs take
one path. Trained by ``talkrig train --stage closure_detector`` on the phone tracks the corpora carry;
its operating threshold is fitted on the validation split and stored in the config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from motion_server.performer.coarticulation import bilabial_windows
from motion_server.performer.visemes import BILABIALS, OPEN_VOWELS
from motion_server.phones import Phone

from .phone_track import DEFAULT_SYMBOLS

# the event symbol handed to the closure constraint: any bilabial shuts the lips the same way
EVENT_SYMBOL = "P"


def _track_ids(names: frozenset[str], symbols: Sequence[str]) -> list[int]:
    """Phone-track indices (1 + position, as ``phone_track`` writes them) of ``names`` in ``symbols``."""
    return [i + 1 for i, s in enumerate(symbols) if s in names]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) frame pairs of each run of True in ``mask``, end exclusive."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def bilabial_frames(track: np.ndarray | torch.Tensor,
                    symbols: Sequence[str] = DEFAULT_SYMBOLS) -> np.ndarray | torch.Tensor:
    """1 where the phone track is a /p b m/, else 0 (same type as ``track``)."""
    ids = _track_ids(BILABIALS, symbols)
    if isinstance(track, torch.Tensor):
        return torch.isin(track, torch.tensor(ids, device=track.device)).float()
    return np.isin(track, ids).astype(np.float32)


class ClosureDetector(nn.Module):
    """Feature rows [B, T, F] -> closure logits [B, T]: a projection and dilated 1-D convolutions of
    width 5, non-causal like the rest of the model (each sees +-2 * dilation frames: dilations 1/2/4/8
    see +-30 frames, +-1 s at 30 fps)."""

    def __init__(self, feat_dim: int, cfg: dict[str, Any], speech_dim: int = 0) -> None:
        super().__init__()
        d = int(cfg["d"])
        reads = cfg.get("reads", "all")
        if reads not in ("all", "speech_encoder"):
            raise ValueError(f"closure_detector.reads must be 'all' or 'speech_encoder', got {reads!r}")
        if reads == "speech_encoder" and not speech_dim:
            raise ValueError("closure_detector.reads = 'speech_encoder' needs a model with a speech encoder")
        # the speech encoder's columns come last in the feature rows (features.AudioFeatures); alone
        # they generalise to unheard voices better than with the per-clip log-mel beside them
        self.first = feat_dim - speech_dim if reads == "speech_encoder" else 0
        self.inp = nn.Linear(feat_dim - self.first, d)
        self.convs = nn.ModuleList(nn.Conv1d(d, d, 5, padding=2 * dil, dilation=dil)
                                   for dil in cfg.get("dilations", (1, 2, 4)))
        self.out = nn.Conv1d(d, 1, 1)
        self.drop = nn.Dropout(float(cfg.get("dropout", 0.1)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        h = F.gelu(self.inp(feats[..., self.first:])).transpose(1, 2)  # [B, d, T]
        for conv in self.convs:
            h = h + self.drop(F.gelu(conv(h)))
        return self.out(h)[:, 0]


def closure_events(prob: np.ndarray, fps: float, threshold: float, min_frames: int = 1) -> list[Phone]:
    """Runs of frames with closure probability >= ``threshold`` (at least ``min_frames`` long) as
    bilabial phones spanning each run, for the closure constraint."""
    on = np.asarray(prob) >= float(threshold)
    return [Phone(EVENT_SYMBOL, s / fps, t / fps) for s, t in _runs(on) if t - s >= int(min_frames)]


def event_scores(prob: np.ndarray, track: np.ndarray, fps: float, threshold: float,
                 symbols: Sequence[str] = DEFAULT_SYMBOLS) -> tuple[int, int, int, int]:
    """(bilabials caught, bilabials, open-vowel frames wrongly shut, open-vowel frames) for one clip:
    a bilabial run of the phone track is caught when the closure window of a detected event covers its
    middle frame (what the closure metric reads); open vowels are the frames that must stay open."""
    shut = bilabial_windows(closure_events(prob, fps, threshold), len(track), fps) >= 0.5
    runs = _runs(bilabial_frames(track, symbols) > 0)
    caught = sum(int(shut[(s + t - 1) // 2]) for s, t in runs)
    opn = np.isin(track, _track_ids(OPEN_VOWELS, symbols))
    return caught, len(runs), int((shut & opn).sum()), int(opn.sum())
