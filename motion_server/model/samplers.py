"""Few-step deterministic samplers over an x0-predicting model.

Interface (one small class per sampler): ``Sampler(schedule, steps)``, ``.timesteps`` (descending
training-step indices, "trailing" spacing so the first evaluation starts from pure noise), and
``.sample(model_fn, x_T, on_step=None) -> x0`` where ``model_fn(x_t, t: int) -> x0_hat``. ``on_step(i, n)``
runs after every network evaluation (progress, cancel checks). Randomness lives only in ``x_T``, so a
seeded ``x_T`` gives identical outputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .schedule import NoiseSchedule

ModelFn = Callable[[torch.Tensor, int], torch.Tensor]
StepFn = Callable[[int, int], None]


class Sampler:
    name = "base"

    def __init__(self, schedule: NoiseSchedule, steps: int) -> None:
        if not 1 <= steps <= schedule.train_steps:
            raise ValueError(f"steps must be in [1, {schedule.train_steps}], got {steps}")
        self.schedule = schedule
        self.steps = int(steps)
        n = schedule.train_steps
        # trailing spacing: N-1, ..., down to about N/steps - 1
        ts = [round(n - 1 - i * n / steps) for i in range(steps)]
        self.timesteps = [max(0, t) for t in ts]

    def _ab(self, t: int) -> tuple[float, float]:
        a = float(self.schedule.alphas_cumprod[t])
        return a**0.5, (1.0 - a) ** 0.5

    def sample(self, model_fn: ModelFn, x_T: torch.Tensor, on_step: StepFn | None = None) -> torch.Tensor:
        raise NotImplementedError


class DDIMSampler(Sampler):
    """DDIM with eta = 0: x_s = alpha_s * x0_hat + sigma_s * eps_hat, eps_hat implied by x_t and x0_hat."""

    name = "ddim"

    def sample(self, model_fn: ModelFn, x_T: torch.Tensor, on_step: StepFn | None = None) -> torch.Tensor:
        x = x_T
        x0 = x_T
        for i, t in enumerate(self.timesteps):
            x0 = model_fn(x, t)
            if on_step:
                on_step(i, self.steps)
            if i + 1 == self.steps:
                break
            a_t, s_t = self._ab(t)
            a_s, s_s = self._ab(self.timesteps[i + 1])
            eps = (x - a_t * x0) / s_t
            x = a_s * x0 + s_s * eps
        return x0


class DPMSolverPP2MSampler(Sampler):
    """Multistep second-order solver in the data-prediction form (DPM-Solver++ 2M class).

    Works in lambda = log(alpha / sigma). A first-order step from s to t is
    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D with h = lambda_t - lambda_s and D = x0_hat(s);
    from the second step on, D extrapolates linearly from the last two x0 predictions,
    D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev with r = h_prev / h.
    """

    name = "dpm"

    def sample(self, model_fn: ModelFn, x_T: torch.Tensor, on_step: StepFn | None = None) -> torch.Tensor:
        import math

        x = x_T
        x0_prev: torch.Tensor | None = None
        h_prev = 0.0
        x0 = x_T
        for i, t in enumerate(self.timesteps):
            x0 = model_fn(x, t)
            if on_step:
                on_step(i, self.steps)
            if i + 1 == self.steps:
                break
            a_s, s_s = self._ab(t)
            a_t, s_t = self._ab(self.timesteps[i + 1])
            lam_s, lam_t = math.log(a_s / s_s), math.log(a_t / s_t)
            h = lam_t - lam_s
            if x0_prev is None:
                d = x0
            else:
                r = h_prev / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * x0_prev
            x = (s_t / s_s) * x - a_t * math.expm1(-h) * d
            x0_prev, h_prev = x0, h
        return x0


SAMPLERS: dict[str, type[Sampler]] = {"ddim": DDIMSampler, "dpm": DPMSolverPP2MSampler}


def make_sampler(name: str, schedule: NoiseSchedule, steps: int) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    return SAMPLERS[name](schedule, steps)
