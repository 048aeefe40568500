"""Correctors: Langevin MCMC at a fixed time t (Song et al. 2021, Alg. 4-5; Song & Ermon 2019).

Each runs ``n_steps`` updates x <- x + alpha s(x, t) + sqrt(2 alpha) z and applies ``project``
after every update. The step size alpha is

* ``langevin`` with ``norm="std"`` (default): alpha = 2 (snr std(t))^2, the reference's rule
  alpha = 2 (snr ||z|| / ||s||)^2 with both norms replaced by their values for p_t ~ N(., std^2 I),
  ||z|| ~ sqrt(d) and ||s|| ~ sqrt(d) / std(t). It depends on t only, so every update is an
  unadjusted Langevin step with a fixed step for all samples: it leaves p_t invariant up to
  O(alpha) and keeps the samples independent of each other (same samples for any batch split).
* ``norm="batch"``: the reference implementation's batch-wide rule, the batch means of the
  per-sample norms (one alpha for the batch; samples depend on the batch they are in).
* ``norm="per_sample"``: each sample's own norms, capped at std(t)^2. Biased: alpha is computed
  from the same z it then adds and from the current state, so the chain does not keep p_t
  invariant (benchmarks/samplers.py measures it).
* ``annealed_langevin``: alpha = 2 (snr std(t))^2 as well (the reference's
  AnnealedLangevinDynamics), i.e. NCSN's alpha_i = epsilon sigma_i^2 / sigma_L^2 with
  epsilon = 2 snr^2 sigma_L^2; pass ``step_size=epsilon`` to set NCSN's epsilon directly
  (sigma_L = std(eps), the last level).
The reference's extra factor alpha_i = 1 - beta_i (VP, within 2% of 1) is omitted.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sde import batch_view

__all__ = [
    "CORRECTORS",
    "LANGEVIN_NORMS",
    "AnnealedLangevinCorrector",
    "Corrector",
    "LangevinCorrector",
    "NoneCorrector",
    "annealed_step",
]

LANGEVIN_NORMS = ("std", "batch", "per_sample")


def annealed_step(snr: float, std: float) -> float:
    """alpha(t) = 2 (snr std(t))^2: the Langevin step from the noise level alone."""
    return 2.0 * (snr * std) ** 2


class Corrector:
    name = "base"

    def __init__(
        self,
        snr: float = 0.16,
        n_steps: int = 1,
        norm: str = "std",
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

    def step(self, ctx: SamplerContext, i: int, x: Tensor, t: Tensor) -> Tensor:
        """n_steps Langevin updates at time t (float64 0-d)."""
        t_vec = ctx.tvec(t, x)
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
        std = float(ctx.sde.marginal_coeffs(t)[1])
        if self.norm == "std":
            a = annealed_step(self.snr, std)
            return torch.as_tensor(a, dtype=score.dtype, device=score.device)
        B = score.shape[0]
        g = torch.linalg.vector_norm(score.reshape(B, -1), dim=1)
        n = torch.linalg.vector_norm(z.reshape(B, -1), dim=1)
        if self.norm == "batch":
            g, n = g.mean(), n.mean()
        a = 2.0 * (self.snr * n / g.clamp(min=torch.finfo(score.dtype).tiny)) ** 2
        if self.norm == "per_sample":
            a = a.clamp(max=std**2)
        return batch_view(a, score)


class AnnealedLangevinCorrector(Corrector):
    name = "annealed_langevin"

    def alpha(self, ctx, score, z, t):
        std = float(ctx.sde.marginal_coeffs(t)[1])
        if self.step_size is not None:
            a = self.step_size * std**2 / self.sigma_last**2
        else:
            a = annealed_step(self.snr, std)
        return torch.as_tensor(a, dtype=score.dtype, device=score.device)


class NoneCorrector(Corrector):
    name = "none"

    def step(self, ctx, i, x, t):
        return x


CORRECTORS: dict[str, type[Corrector]] = {
    c.name: c for c in (LangevinCorrector, AnnealedLangevinCorrector, NoneCorrector)
}
