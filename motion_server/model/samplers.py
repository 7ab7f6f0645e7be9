"""Few-step samplers over an x0-predicting model.

Interface (one small class per sampler, stepped from outside like diffusers' schedulers):
``Sampler(schedule, steps)``, ``.timesteps`` (descending training-step indices, "trailing" spacing so the
first evaluation starts from pure noise), ``.start(x_T)``, then while not ``.done``: evaluate the model at
(``.x``, ``.t``) and hand its x0 prediction to ``.step(x0_hat)``; ``.x0`` is the result. ``.sample(model_fn,
x_T, on_step=None) -> x0`` runs that loop for callers that own the model (``model_fn(x_t, t: int) ->
x0_hat``; ``on_step(i, n)`` after every network evaluation: progress, cancel checks). The server steps many
samplers at once (each job its own instance), which is why the loop lives outside. Randomness lives only
in ``x_T`` and, for the ancestral sampler, in its own generator seeded with the job's seed, so a seeded
job gives identical outputs.
"""

from __future__ import annotations

import math
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
        self.i = 0  # network evaluations done so far
        self.x: torch.Tensor | None = None  # the noisy sample the next evaluation reads
        self.x0: torch.Tensor | None = None  # the latest x0 prediction (the result once done)

    def _ab(self, t: int) -> tuple[float, float]:
        a = float(self.schedule.alphas_cumprod[t])
        return a**0.5, (1.0 - a) ** 0.5

    # -- stepping ---------------------------------------------------------------------------------
    def start(self, x_T: torch.Tensor) -> Sampler:
        self.x, self.x0, self.i = x_T, x_T, 0
        self._reset()
        return self

    @property
    def t(self) -> int:
        """The training step the next evaluation is at."""
        return self.timesteps[self.i]

    @property
    def done(self) -> bool:
        return self.i >= self.steps

    def step(self, x0_hat: torch.Tensor) -> None:
        """Take the model's x0 prediction at (x, t) and move x to the next timestep."""
        if self.x is None or self.done:
            raise RuntimeError("step() needs start() first and at most `steps` calls")
        self.x0 = x0_hat
        if self.i + 1 < self.steps:
            self.x = self._next(self.x, x0_hat, self.timesteps[self.i], self.timesteps[self.i + 1])
        self.i += 1

    def sample(self, model_fn: ModelFn, x_T: torch.Tensor, on_step: StepFn | None = None) -> torch.Tensor:
        self.start(x_T)
        while not self.done:
            x0 = model_fn(self.x, self.t)
            if on_step:
                on_step(self.i, self.steps)
            self.step(x0)
        return self.x0

    # -- one class per sampler ----------------------------------------------------------------------
    def _reset(self) -> None:
        """Forget the history of an earlier run (multistep samplers keep some)."""

    def _next(self, x: torch.Tensor, x0: torch.Tensor, t: int, s: int) -> torch.Tensor:
        """x at step s < t from x at t and the x0 prediction there."""
        raise NotImplementedError


class DDIMSampler(Sampler):
    """DDIM with eta = 0: x_s = alpha_s * x0_hat + sigma_s * eps_hat, eps_hat implied by x_t and x0_hat."""

    name = "ddim"

    def _next(self, x: torch.Tensor, x0: torch.Tensor, t: int, s: int) -> torch.Tensor:
        a_t, s_t = self._ab(t)
        a_s, s_s = self._ab(s)
        eps = (x - a_t * x0) / s_t
        return a_s * x0 + s_s * eps


class DPMSolverPP2MSampler(Sampler):
    """Multistep second-order solver in the data-prediction form (DPM-Solver++ 2M class).

    Works in lambda = log(alpha / sigma). A first-order step from s to t is
    x_t = (sigma_t / sigma_s) x_s - alpha_t (e^{-h} - 1) D with h = lambda_t - lambda_s and D = x0_hat(s);
    from the second step on, D extrapolates linearly from the last two x0 predictions,
    D = (1 + 1/(2r)) x0_s - 1/(2r) x0_prev with r = h_prev / h.
    """

    name = "dpm"

    def _reset(self) -> None:
        self.x0_prev: torch.Tensor | None = None
        self.h_prev = 0.0

    def _next(self, x: torch.Tensor, x0: torch.Tensor, t: int, s: int) -> torch.Tensor:
        a_s, s_s = self._ab(t)  # the step we are at ("s" in the solver's notation above) ...
        a_t, s_t = self._ab(s)  # ... and the one we go to
        lam_s, lam_t = math.log(a_s / s_s), math.log(a_t / s_t)
        h = lam_t - lam_s
        if self.x0_prev is None:
            d = x0
        else:
            r = self.h_prev / h
            d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * self.x0_prev
        self.x0_prev, self.h_prev = x0, h
        return (s_t / s_s) * x - a_t * math.expm1(-h) * d


class AncestralSampler(DDIMSampler):
    """DDIM with eta = 1 (ancestral, DDPM-like): each step re-draws part of its noise, as the DDPM
    posterior does, instead of following the deterministic path. The noise comes from the sampler's own
    generator seeded with the job's seed: same seed, same result, whoever the job is batched with.
    (On the default model it left head and brow spread about where DPM-Solver++ puts them; what gives
    their spread back is ``postprocess.variance_gain``.)"""

    name = "ancestral"
    eta = 1.0

    def __init__(self, schedule: NoiseSchedule, steps: int, seed: int = 0) -> None:
        super().__init__(schedule, steps)
        self.seed = int(seed)

    def _reset(self) -> None:
        self.gen = torch.Generator().manual_seed(self.seed + 1)  # not x_T's stream

    def _next(self, x: torch.Tensor, x0: torch.Tensor, t: int, s: int) -> torch.Tensor:
        a_t, s_t = self._ab(t)
        a_s, s_s = self._ab(s)
        eps = (x - a_t * x0) / s_t
        # the posterior's spread between the two noise levels, scaled by eta
        sigma = self.eta * (s_s / s_t) * math.sqrt(max(0.0, 1.0 - (a_t / a_s) ** 2))
        z = torch.randn(x.shape, generator=self.gen).to(x.device, x.dtype)
        return a_s * x0 + math.sqrt(max(0.0, s_s**2 - sigma**2)) * eps + sigma * z


SAMPLERS: dict[str, type[Sampler]] = {"ddim": DDIMSampler, "dpm": DPMSolverPP2MSampler, "ancestral": AncestralSampler}


def make_sampler(name: str, schedule: NoiseSchedule, steps: int, seed: int = 0) -> Sampler:
    """A sampler by name; ``seed`` feeds the samplers that draw noise while stepping."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {sorted(SAMPLERS)}")
    cls = SAMPLERS[name]
    return cls(schedule, steps, seed=seed) if issubclass(cls, AncestralSampler) else cls(schedule, steps)
