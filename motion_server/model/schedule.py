"""Noise schedules: x_t = alpha_t * x0 + sigma_t * eps over ``train_steps`` discrete steps.

One small class each, same interface (``alphas_cumprod`` tensor [N]); chosen by name from config data.
"""

from __future__ import annotations

import math

import torch


class NoiseSchedule:
    """Base: holds alpha_bar[t]; ``alpha(t)`` / ``sigma(t)`` index it (t: long tensor)."""

    name = "base"

    def __init__(self, train_steps: int = 1000) -> None:
        self.train_steps = int(train_steps)
        self.alphas_cumprod = self._alpha_bar().clamp(1e-6, 1.0 - 1e-6).float()

    def _alpha_bar(self) -> torch.Tensor:
        raise NotImplementedError

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.alphas_cumprod.to(t.device)[t].sqrt()

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.alphas_cumprod.to(t.device)[t]).sqrt()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return self.alpha(t).view(shape) * x0 + self.sigma(t).view(shape) * noise

    def to_config(self) -> dict:
        return {"schedule": self.name, "train_steps": self.train_steps}


class CosineSchedule(NoiseSchedule):
    """alpha_bar(t) = cos²((t/N + s)/(1 + s) · π/2) (Nichol & Dhariwal's cosine schedule): spends more
    steps at low noise than linear, which suits few-step sampling."""

    name = "cosine"

    def __init__(self, train_steps: int = 1000, s: float = 0.008) -> None:
        self.s = s
        super().__init__(train_steps)

    def _alpha_bar(self) -> torch.Tensor:
        t = (torch.arange(self.train_steps, dtype=torch.float64) + 1) / self.train_steps
        f = torch.cos((t + self.s) / (1 + self.s) * math.pi / 2) ** 2
        return f / math.cos(self.s / (1 + self.s) * math.pi / 2) ** 2


class LinearSchedule(NoiseSchedule):
    """DDPM's linear betas from ``beta_start`` to ``beta_end`` (DreamTalk uses 1e-4 .. 0.02)."""

    name = "linear"

    def __init__(self, train_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        self.beta_start, self.beta_end = beta_start, beta_end
        super().__init__(train_steps)

    def _alpha_bar(self) -> torch.Tensor:
        betas = torch.linspace(self.beta_start, self.beta_end, self.train_steps, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, dim=0)


SCHEDULES: dict[str, type[NoiseSchedule]] = {"cosine": CosineSchedule, "linear": LinearSchedule}


def make_schedule(cfg: dict) -> NoiseSchedule:
    name = cfg.get("schedule", "cosine")
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; choose one of {sorted(SCHEDULES)}")
    return SCHEDULES[name](int(cfg.get("train_steps", 1000)))
