"""DPM-Solver++ (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models"): the multistep ODE solver (Algorithm 2; order 3 as in the authors' code)
and the stochastic SDE-DPM-Solver++(2M) (the paper's SDE variant, Appendix B).

With h = lambda_{i+1} - lambda_i (lambda = log(m / std) = -log sigma), x_hat = x / m and data
predictions D (Tweedie; newest D0 at t_i, r_k = previous logSNR steps over h):

ODE, phi_1 = expm1(-h), phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2:

    x_hat_{i+1} = e^{-h} x_hat_i - phi_1 D0                                   (order 1, = DDIM)
                - 1/2 phi_1 (D0 - D_-1) / r0                                  (order 2)
          or    + phi_2 D1 - phi_3 D2  with the divided differences of D0, D_-1, D_-2 (order 3)

SDE (2M), the exponential integrator of the reverse SDE in data prediction:

    x_hat_{i+1} = e^{-2h} x_hat_i + (1 - e^{-2h}) D0 + (1 - e^{-2h}) (D0 - D_-1) / (2 r0)
                  + sigma_{i+1} sqrt(1 - e^{-2h}) z

One evaluation per step. Warm-up: step i uses order min(order, i + 1) (the first step is
first order); with ``lower_order_final`` and fewer than 15 steps the last steps use
min(order, steps left), as the authors' code does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from scoresde.sampling.checks import check_bool
from scoresde.sampling.context import SamplerContext
from scoresde.sampling.loop import ScaledGridMethod, grid_for, run_grid
from scoresde.sampling.registry import MultistepOptions, register_sampler

__all__ = ["DPMSolverOptions", "SDEDPMSolverOptions", "run_dpm_solver", "run_sde_dpm_solver"]


@dataclass(frozen=True)
class DPMSolverOptions(MultistepOptions):
    """``order`` 1..3 on the logSNR grid, 14 steps; ``lower_order_final`` (see module)."""

    steps: int | None = 14
    time_grid: str = "logsnr"
    lower_order_final: bool = True

    def check(self) -> None:
        super().check()
        check_bool("lower_order_final", self.lower_order_final)


@dataclass(frozen=True)
class SDEDPMSolverOptions(MultistepOptions):
    """SDE-DPM-Solver++(2M): ``order`` 1 or 2 (2M), logSNR grid, 20 steps."""

    ORDERS = (1, 2)
    steps: int | None = 20
    time_grid: str = "logsnr"
    order: int = 2


class _DPMSolver(ScaledGridMethod):
    name = "dpm_solver"

    def __init__(self, sde, grid, order: int, lower_order_final: bool):
        super().__init__(sde, grid)
        self.order, self.lof = order, lower_order_final
        self.hist: list[tuple[float, Tensor]] = []  # (lambda, D), newest last

    def step(self, ctx, i, x, t, s):
        lam, m = self.lam, self.m
        D0 = ctx.denoised(x, t, i)
        self.hist = (self.hist + [(lam[i], D0)])[-3:]
        k = min(self.order, len(self.hist))
        if self.lof and self.S < 15:
            k = min(k, self.S - i)
        h = lam[i + 1] - lam[i]
        phi1 = math.expm1(-h)
        xh = math.exp(-h) * (x / m[i]) - phi1 * D0
        if k == 2:
            r0 = (lam[i] - self.hist[-2][0]) / h
            xh = xh - (0.5 * phi1 / r0) * (D0 - self.hist[-2][1])
        elif k == 3:
            (l2, D2_), (l1, D1_) = self.hist[-3], self.hist[-2]
            r0, r1 = (lam[i] - l1) / h, (l1 - l2) / h
            d1_0 = (D0 - D1_) / r0
            d1_1 = (D1_ - D2_) / r1
            D1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            D2 = (d1_0 - d1_1) / (r0 + r1)
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            xh = xh + phi2 * D1 - phi3 * D2
        return m[i + 1] * xh


class _SDEDPMSolver(ScaledGridMethod):
    name = "sde_dpm_solver"

    def __init__(self, sde, grid, order: int):
        super().__init__(sde, grid)
        self.order = order
        self.prev: tuple[float, Tensor] | None = None

    def step(self, ctx, i, x, t, s):
        lam, m, sig = self.lam, self.m, self.sig
        D0 = ctx.denoised(x, t, i)
        h = lam[i + 1] - lam[i]
        one_m = -math.expm1(-2.0 * h)  # 1 - e^{-2h}
        xh = math.exp(-2.0 * h) * (x / m[i]) + one_m * D0
        if self.order == 2 and self.prev is not None:
            r0 = (lam[i] - self.prev[0]) / h
            xh = xh + (0.5 * one_m / r0) * (D0 - self.prev[1])
        self.prev = (lam[i], D0)
        xh = xh + (sig[i + 1] * math.sqrt(one_m)) * ctx.noise.normal()
        return m[i + 1] * xh


def run_dpm_solver(ctx: SamplerContext, x: Tensor, opts: DPMSolverOptions, t_start, eps):
    grid = grid_for(ctx, opts, t_start, eps)
    return run_grid(ctx, x, grid, _DPMSolver(ctx.sde, grid, opts.order, opts.lower_order_final))


def run_sde_dpm_solver(ctx: SamplerContext, x: Tensor, opts: SDEDPMSolverOptions, t_start, eps):
    grid = grid_for(ctx, opts, t_start, eps)
    return run_grid(ctx, x, grid, _SDEDPMSolver(ctx.sde, grid, opts.order))


register_sampler(
    "dpm_solver",
    DPMSolverOptions,
    run_dpm_solver,
    stochastic=False,
    summary="multistep DPM-Solver++ (Lu et al. 2022), order 3, logSNR grid",
)
register_sampler(
    "sde_dpm_solver",
    SDEDPMSolverOptions,
    run_sde_dpm_solver,
    stochastic=True,
    summary="SDE-DPM-Solver++(2M) (Lu et al. 2022, the stochastic multistep variant)",
)
