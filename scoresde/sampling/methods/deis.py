"""DEIS and iPNDM (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential
Integrator", ICLR): multistep solvers of the probability-flow ODE in the noise prediction.

In the scaled variables of :class:`scoresde.sampling.loop.ScaledGridMethod` (x_hat = x / m,
sigma = std / m; DEIS's rho) the flow is d x_hat / d sigma = eps(x_hat, sigma) with the noise
prediction eps = (x_hat - D) / sigma = -std s(x, t). With eps_i at the grid points and
h_i = sigma_{i+1} - sigma_i (< 0):

* iPNDM (the paper's improved PNDM, App. B; as in the diff-sampler comparison): fixed
  Adams-Bashforth weights on the eps history,
      order 1: x_hat_{i+1} = x_hat_i + h_i eps_i                                   (= DDIM)
      order 2: + h_i (3 eps_i - eps_{i-1}) / 2
      order 3: + h_i (23 eps_i - 16 eps_{i-1} + 5 eps_{i-2}) / 12
      order 4: + h_i (55 eps_i - 59 eps_{i-1} + 37 eps_{i-2} - 9 eps_{i-3}) / 24
  (the bracket replaces h_i eps_i). The weights assume equal steps in sigma: on a grid uniform in
  sigma (``time_grid="karras", rho=1``) order p converges at order p; on other grids the
  step-size changes add an O(h^2) global term (the paper's and diff-sampler's method as is).
* DEIS tAB (eq. 14): eps extrapolated by the Lagrange polynomial in the SDE time t through the
  last ``order`` points, integrated exactly against d sigma,
      x_hat_{i+1} = x_hat_i + sum_j C_ij eps_{i-j},
      C_ij = int_{sigma_i}^{sigma_{i+1}} l_j(t(sigma)) d sigma,
  the integral by 16-point Gauss-Legendre in sigma. ``order`` = number of eps values (degree + 1):
  order 4 is the paper's tAB3 (cubic; 4th order), order 1 is DDIM.

One evaluation per step. Warm-up: step i uses order min(order, i + 1) (the first step is DDIM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.loop import ScaledGridMethod, grid_for, run_grid
from scoresde.sampling.registry import MultistepOptions, register_sampler

__all__ = ["EpsMultistepOptions", "deis_coefficients", "run_deis", "run_ipndm"]

# Adams-Bashforth weights, newest first (iPNDM)
AB_WEIGHTS = {
    1: [1.0],
    2: [3 / 2, -1 / 2],
    3: [23 / 12, -16 / 12, 5 / 12],
    4: [55 / 24, -59 / 24, 37 / 24, -9 / 24],
}
_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(16)


@dataclass(frozen=True)
class EpsMultistepOptions(MultistepOptions):
    """iPNDM and DEIS: ``order`` 1..4 (default 4: iPNDM's AB4, DEIS's tAB3) on the Karras grid."""

    ORDERS = (1, 2, 3, 4)
    steps: int | None = 9
    time_grid: str = "karras"
    order: int = 4


def deis_coefficients(sde, grid: Tensor, i: int, k: int) -> list[float]:
    """C_ij, j = 0..k-1 (newest first): int_{sigma_i}^{sigma_{i+1}} l_j(t(sigma)) d sigma with l_j
    the Lagrange basis in t through t_i, t_{i-1}, ..., t_{i-k+1}."""
    ts = [float(grid[i - j]) for j in range(k)]
    lam = sde.log_snr(grid[i : i + 2].to(torch.float64))
    s0, s1 = float(torch.exp(-lam[0])), float(torch.exp(-lam[1]))
    u = 0.5 * (s1 - s0) * _GL_NODES + 0.5 * (s1 + s0)
    tau = sde.t_from_log_snr(-torch.log(torch.as_tensor(u, dtype=torch.float64))).numpy()
    out = []
    for j in range(k):
        ell = np.ones_like(tau)
        for m in range(k):
            if m != j:
                ell = ell * (tau - ts[m]) / (ts[j] - ts[m])
        out.append(float(0.5 * (s1 - s0) * np.sum(_GL_WEIGHTS * ell)))
    return out


class _EpsMultistep(ScaledGridMethod):
    """The shared eps-history step: x_hat_{i+1} = x_hat_i + sum_j c_j eps_{i-j}."""

    def __init__(self, sde, grid, order: int):
        super().__init__(sde, grid)
        self.sde_, self.grid, self.order = sde, grid, order
        self.eps: list[Tensor] = []  # newest first

    def coefficients(self, i: int, k: int) -> list[float]:
        raise NotImplementedError

    def step(self, ctx, i, x, t, s):
        m, sig = self.m, self.sig
        xh = x / m[i]
        self.eps = [(xh - ctx.denoised(x, t, i)) / sig[i]] + self.eps[: self.order - 1]
        for c, e in zip(self.coefficients(i, len(self.eps)), self.eps):
            xh = xh + c * e
        return m[i + 1] * xh


class _IPNDM(_EpsMultistep):
    name = "ipndm"

    def coefficients(self, i, k):
        h = self.sig[i + 1] - self.sig[i]
        return [h * w for w in AB_WEIGHTS[k]]


class _DEIS(_EpsMultistep):
    name = "deis"

    def coefficients(self, i, k):
        return deis_coefficients(self.sde_, self.grid, i, k)


def run_ipndm(
    ctx: SamplerContext, x: Tensor, opts: EpsMultistepOptions, t_start: float, eps: float
):
    grid = grid_for(ctx, opts, t_start, eps)
    return run_grid(ctx, x, grid, _IPNDM(ctx.sde, grid, opts.order))


def run_deis(ctx: SamplerContext, x: Tensor, opts: EpsMultistepOptions, t_start: float, eps: float):
    grid = grid_for(ctx, opts, t_start, eps)
    return run_grid(ctx, x, grid, _DEIS(ctx.sde, grid, opts.order))


register_sampler(
    "ipndm",
    EpsMultistepOptions,
    run_ipndm,
    stochastic=False,
    summary="iPNDM (Zhang & Chen 2023): 4th-order Adams-Bashforth on the noise prediction",
)
register_sampler(
    "deis",
    EpsMultistepOptions,
    run_deis,
    stochastic=False,
    summary="DEIS tAB3 (Zhang & Chen 2023): exponential integrator, cubic eps extrapolation in t",
)
