"""The diffusion motion model: audio features -> denoiser (+ style encoder, lip expert, style predictor).

Modules, one job each: ``config`` (JSON configs), ``features`` (log-mel, plus the speech encoder's rows),
``speech_encoder`` (Whisper's encoder in torch, read from installed faster-whisper weights), ``audio_encoder``, ``style_encoder``, ``denoiser``, ``schedule``, ``samplers``, ``guidance``,
``lip_expert``, ``style_predictor``, ``network`` (the container), ``long`` (windowed sampling of long
audio), ``postprocess`` (intensity / head / blink controls), ``smoothing`` (slow groups smoothed, their variance
restored), ``checkpoint``, ``data``, ``train``,
``engine`` (the ``DiffusionEngine``).
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "default"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
MOTION_DIM = 58  # 52 ARKit weights + 6 head channels

__all__ = ["CONFIG_DIR", "DEFAULT_CHECKPOINT", "MOTION_DIM"]
