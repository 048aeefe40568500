"""DDIM (Song, Meng & Ermon 2021, eq. 12) for any linear SDE.

With Tweedie's x0_hat = (x_t + std_t^2 s) / m_t and eps_hat = -std_t s, one step t -> s < t is

    x_s = m_s x0_hat + sqrt(std_s^2 - c^2) eps_hat + c z,
    c = eta * sqrt(b^2 std_s^2 / std_t^2),   b^2 = std_t^2 - (m_t / m_s)^2 std_s^2,

i.e. the posterior q(x_s | x_t, x0_hat) with its variance scaled by eta^2. eta = 0 is the
first-order exponential integrator of the probability-flow ODE (DPM-Solver-1); eta = 1 is DDPM's
ancestral step with sigma^2 = beta-tilde (Ho et al. 2020, Algorithm 2; for VE the SMLD ancestral
step of Song et al. 2021, eq. 47). The VP discrete chain's alphas_cumprod are replaced by the
continuous m(t)^2, so the grid may be any set of times. VE (m = 1) is the VE-DDIM variant.
The step itself is :func:`scoresde.sampling.predictors.ddim_step` (shared with the ancestral
predictor, its eta = 1 case).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from scoresde.sampling.checks import check_positive
from scoresde.sampling.context import SamplerContext
from scoresde.sampling.loop import GridMethod, grid_for, run_grid
from scoresde.sampling.predictors import ddim_step
from scoresde.sampling.registry import GridOptions, register_sampler

__all__ = ["DDIMOptions", "run_ddim"]


@dataclass(frozen=True)
class DDIMOptions(GridOptions):
    """steps 50 on the logSNR grid; ``eta`` in [0, inf): 0 deterministic, 1 ancestral."""

    steps: int | None = 50
    time_grid: str = "logsnr"
    eta: float = 0.0

    def check(self) -> None:
        super().check()
        check_positive("eta", self.eta, allow_zero=True)


class _DDIM(GridMethod):
    name = "ddim"

    def __init__(self, eta: float):
        self.eta = eta

    def step(self, ctx, i, x, t, s):
        return ddim_step(ctx, i, x, t, s, self.eta)


def run_ddim(ctx: SamplerContext, x: Tensor, opts: DDIMOptions, t_start: float, eps: float):
    """DDIM over the options' grid."""
    return run_grid(ctx, x, grid_for(ctx, opts, t_start, eps), _DDIM(opts.eta))


register_sampler(
    "ddim",
    DDIMOptions,
    run_ddim,
    stochastic=False,
    summary="DDIM (Song, Meng & Ermon 2021), eta 0 deterministic .. 1 ancestral; logSNR grid",
)
