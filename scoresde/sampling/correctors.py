"""Correctors: Langevin MCMC at a fixed time t (Song et al. 2021, Algorithms 4-5; Song & Ermon 2019).

Each runs ``n_steps`` updates x <- x + alpha s(x, t) + sqrt(2 alpha) z and applies ``project``
after every update. The step size alpha is

* ``langevin``: alpha = 2 (snr ||z|| / ||s||)^2, so the drift/noise norm ratio equals ``snr``.
  ``norm="per_sample"`` (default) uses each sample's own norms; ``norm="batch"`` uses the batch
  means of the per-sample norms, as the reference implementation does (one alpha for the batch).
  Per sample, alpha is capped at std(t)^2: p_t = p_0 * N(0, std^2) has -Hess log p_t <= I / std^2,
  so a step of at most std^2 is a stable gradient step; without the cap a sample sitting near a
  mode (||s|| -> 0) of a low-dimensional p_t takes an unbounded step. The reference's extra factor
  alpha_i = 1 - beta_i (VP, within 2% of 1) is omitted.
* ``annealed_langevin``: alpha = 2 (snr std(t))^2 (the reference's AnnealedLangevinDynamics),
  i.e. NCSN's alpha_i = epsilon sigma_i^2 / sigma_L^2 with epsilon = 2 snr^2 sigma_L^2; pass
  ``step_size=epsilon`` to set NCSN's epsilon directly (sigma_L = std(eps), the last level).
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sde import batch_view

__all__ = [
    "CORRECTORS",
    "AnnealedLangevinCorrector",
    "Corrector",
    "LangevinCorrector",
    "NoneCorrector",
]

LANGEVIN_NORMS = ("per_sample", "batch")


class Corrector:
    name = "base"

    def __init__(
        self,
        snr: float = 0.16,
        n_steps: int = 1,
        norm: str = "per_sample",
        step_size: float | None = None,
        sigma_last: float = 1.0,
    ):
        self.snr = float(snr)
        self.n_steps = int(n_steps)
        self.norm = norm
        self.step_size = step_size
        self.sigma_last = float(sigma_last)

    def alpha(self, ctx: SamplerContext, score: Tensor, z: Tensor, t: Tensor) -> Tensor:
        raise NotImplementedError

    def step(self, ctx: SamplerContext, x: Tensor, i: int, t_vec: Tensor, t: Tensor) -> Tensor:
        """n_steps Langevin updates at time t (float64 0-d; t_vec is t as [B])."""
        for _ in range(self.n_steps):
            score = ctx.score(x, t_vec, i)
            z = ctx.noise.normal()
            alpha = self.alpha(ctx, score, z, t)
            x = x + alpha * score + torch.sqrt(2.0 * alpha) * z
            x = ctx.project(x, t_vec)
        return x


class LangevinCorrector(Corrector):
    name = "langevin"

    def alpha(self, ctx, score, z, t):
        B = score.shape[0]
        g = torch.linalg.vector_norm(score.reshape(B, -1), dim=1)
        n = torch.linalg.vector_norm(z.reshape(B, -1), dim=1)
        if self.norm == "batch":
            g, n = g.mean(), n.mean()
        a = 2.0 * (self.snr * n / g.clamp(min=torch.finfo(score.dtype).tiny)) ** 2
        if self.norm == "per_sample":
            a = a.clamp(max=float(ctx.sde.marginal_coeffs(t)[1]) ** 2)
        return batch_view(a, score)


class AnnealedLangevinCorrector(Corrector):
    name = "annealed_langevin"

    def alpha(self, ctx, score, z, t):
        std = float(ctx.sde.marginal_coeffs(t)[1])
        if self.step_size is not None:
            a = self.step_size * std**2 / self.sigma_last**2
        else:
            a = 2.0 * (self.snr * std) ** 2
        return torch.as_tensor(a, dtype=score.dtype, device=score.device)


class NoneCorrector(Corrector):
    name = "none"

    def step(self, ctx, x, i, t_vec, t):
        return x


CORRECTORS: dict[str, type[Corrector]] = {
    c.name: c for c in (LangevinCorrector, AnnealedLangevinCorrector, NoneCorrector)
}
