"""High-order deterministic samplers of the probability-flow ODE for very few score evaluations.

Both work in EDM's scaled variables (Karras et al. 2022): with x_t = m(t) (x_0 + sigma(t) n),
sigma = std / m = exp(-lambda), the scaled state x_hat = x / m obeys

    d x_hat / d sigma = (x_hat - D(x_hat, sigma)) / sigma,     D = Tweedie's E[x_0 | x_t],

for every linear SDE (VP, sub-VP; VE has m = 1 and x_hat = x). The final step of each method
ends at eps; the ``denoise`` option then jumps to sigma = 0 (D itself, one more evaluation).
"""

from __future__ import annotations

import math

from torch import Tensor

from .context import SamplerContext
from .grids import sigma_of

__all__ = ["run_dpm_solver", "run_heun"]


def run_heun(ctx: SamplerContext, x: Tensor, grid: Tensor) -> Tensor:
    """EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1), 2 evaluations per step:
    d_i = (x_hat - D_i) / sigma_i;  x_hat' = x_hat + (sigma_{i+1} - sigma_i) d_i;
    x_hat_{i+1} = x_hat + (sigma_{i+1} - sigma_i) (d_i + d'_{i+1}) / 2."""
    m, std, sig = (v.tolist() for v in sigma_of(ctx.sde, grid))
    tt = grid.to(dtype=x.dtype, device=x.device)
    B = x.shape[0]
    ctx.record(x, grid[0])
    for i in ctx.steps(len(grid) - 1, "heun"):
        xh = x / m[i]
        d = (xh - ctx.denoised(x, tt[i].expand(B), m[i], std[i], i)) / sig[i]
        dsig = sig[i + 1] - sig[i]
        xh_e = xh + dsig * d
        d2 = (xh_e - ctx.denoised(m[i + 1] * xh_e, tt[i + 1].expand(B), m[i + 1], std[i + 1], i)) / sig[i + 1]
        x = m[i + 1] * (xh + (0.5 * dsig) * (d + d2))
        x = ctx.project(x, tt[i + 1].expand(B))
        ctx.record(x, grid[i + 1])
    return x


def run_dpm_solver(ctx: SamplerContext, x: Tensor, grid: Tensor, order: int = 3, lower_order_final: bool = True) -> Tensor:
    """Multistep DPM-Solver++ (Lu et al. 2022b, Algorithm 2; 3rd order as in the authors' code).

    With h = lambda_{i+1} - lambda_i, phi_1 = expm1(-h), phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2
    and data predictions D (newest first, D0 at t_i):

        x_hat_{i+1} = e^{-h} x_hat_i - phi_1 D0                                (order 1, = DDIM)
                    - 1/2 phi_1 (D0 - D_-1) / r0                               (order 2)
        or  + phi_2 D1 - phi_3 D2  with the divided differences of D0, D_-1, D_-2   (order 3)

    r_k are the previous logSNR steps over h. One evaluation per step; the first steps (and, when
    ``lower_order_final`` and fewer than 15 steps, the last ones) use lower orders.
    """
    m, std, sig = (v.tolist() for v in sigma_of(ctx.sde, grid))
    lam = [-math.log(s) for s in sig]
    tt = grid.to(dtype=x.dtype, device=x.device)
    B = x.shape[0]
    S = len(grid) - 1
    hist = []  # (lambda, D), newest last
    ctx.record(x, grid[0])
    for i in ctx.steps(S, "dpm_solver"):
        D0 = ctx.denoised(x, tt[i].expand(B), m[i], std[i], i)
        hist = (hist + [(lam[i], D0)])[-3:]
        k = min(order, len(hist))
        if lower_order_final and S < 15:
            k = min(k, S - i)
        h = lam[i + 1] - lam[i]
        phi1 = math.expm1(-h)
        xh = math.exp(-h) * (x / m[i]) - phi1 * D0
        if k == 2:
            r0 = (lam[i] - hist[-2][0]) / h
            xh = xh - (0.5 * phi1 / r0) * (D0 - hist[-2][1])
        elif k == 3:
            (l2, D2_), (l1, D1_) = hist[-3], hist[-2]
            r0, r1 = (lam[i] - l1) / h, (l1 - l2) / h
            d1_0 = (D0 - D1_) / r0
            d1_1 = (D1_ - D2_) / r1
            D1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
            D2 = (d1_0 - d1_1) / (r0 + r1)
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            xh = xh + phi2 * D1 - phi3 * D2
        x = m[i + 1] * xh
        x = ctx.project(x, tt[i + 1].expand(B))
        ctx.record(x, grid[i + 1])
    return x
