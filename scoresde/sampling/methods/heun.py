"""EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1), 2 evaluations per step:

    d_i = (x_hat_i - D_i) / sigma_i;   x_hat' = x_hat_i + (sigma_{i+1} - sigma_i) d_i;
    x_hat_{i+1} = x_hat_i + (sigma_{i+1} - sigma_i) (d_i + d'_{i+1}) / 2

in the scaled variables of :class:`scoresde.sampling.loop.ScaledGridMethod`, on the
Karras grid (rho = 7) by default.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.loop import ScaledGridMethod, grid_for, run_grid
from scoresde.sampling.registry import GridOptions, register_sampler

__all__ = ["HeunOptions", "run_heun"]


@dataclass(frozen=True)
class HeunOptions(GridOptions):
    """18 steps (35 NFE with the final step's 2) on the Karras grid, rho 7."""

    steps: int | None = 18
    time_grid: str = "karras"


class _Heun(ScaledGridMethod):
    name = "heun"

    def step(self, ctx, i, x, t, s):
        m, sig = self.m, self.sig
        xh = x / m[i]
        d = (xh - ctx.denoised(x, t, i)) / sig[i]
        dsig = sig[i + 1] - sig[i]
        xh_e = xh + dsig * d
        d2 = (xh_e - ctx.denoised(m[i + 1] * xh_e, s, i)) / sig[i + 1]
        return m[i + 1] * (xh + (0.5 * dsig) * (d + d2))


def run_heun(ctx: SamplerContext, x: Tensor, opts: HeunOptions, t_start: float, eps: float):
    grid = grid_for(ctx, opts, t_start, eps)
    return run_grid(ctx, x, grid, _Heun(ctx.sde, grid))


register_sampler(
    "heun",
    HeunOptions,
    run_heun,
    stochastic=False,
    summary="EDM's Heun 2nd-order ODE sampler (Karras et al. 2022, Alg. 1), Karras grid",
)
