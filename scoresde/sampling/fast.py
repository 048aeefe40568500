"""High-order deterministic samplers of the probability-flow ODE for very few score evaluations.

Both work in EDM's scaled variables (Karras et al. 2022): with x_t = m(t) (x_0 + sigma(t) n),
sigma = std / m = exp(-lambda), the scaled state x_hat = x / m obeys

    d x_hat / d sigma = (x_hat - D(x_hat, sigma)) / sigma,     D = Tweedie's E[x_0 | x_t],

for every linear SDE (VP, sub-VP; VE has m = 1 and x_hat = x). The final step of each method
ends at eps; the ``denoise`` option then jumps to sigma = 0 (D itself, one more evaluation).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.grids import sigma_of

__all__ = ["UNIPC_VARIANTS", "run_dpm_solver", "run_heun", "run_unipc", "unipc_coefficients"]

UNIPC_VARIANTS = ("bh1", "bh2")


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
        d2 = (
            xh_e - ctx.denoised(m[i + 1] * xh_e, tt[i + 1].expand(B), m[i + 1], std[i + 1], i)
        ) / sig[i + 1]
        x = m[i + 1] * (xh + (0.5 * dsig) * (d + d2))
        x = ctx.project(x, tt[i + 1].expand(B))
        ctx.record(x, grid[i + 1])
    return x


def run_dpm_solver(
    ctx: SamplerContext, x: Tensor, grid: Tensor, order: int = 3, lower_order_final: bool = True
) -> Tensor:
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


def unipc_coefficients(
    h: float, rks: list[float], variant: str = "bh2"
) -> tuple[float, list[float], list[float], list[float]]:
    """UniPC's coefficients for a data-prediction step of logSNR length h (Zhao et al. 2023, Alg. 2/3).

    With hh = -h, phi_1 = expm1(hh), B(h) = hh ("bh1") or expm1(hh) ("bh2"), the order-p system
    R rho = b has R_{ij} = r_j^(i-1) (r = previous logSNR offsets over h, last r = 1) and
    b_i = h phi_{i+1}(hh) i! / B(h), phi_{k+1} = phi_k / hh - 1/k!  (phi_1 = phi_1 / hh - 1 first).
    Returns (B(h), rho_predictor [p-1], rho_corrector [p], r [p]) with p = len(rks) + 1;
    order 2 uses rho_p = [1/2], order 1 rho_c = [1/2] (the paper's simplified choices).
    """
    hh = -h
    h_phi_1 = math.expm1(hh)
    B_h = hh if variant == "bh1" else h_phi_1
    r = [float(v) for v in rks] + [1.0]
    p = len(r)
    h_phi_k = h_phi_1 / hh - 1.0
    fact = 1
    b = []
    for i in range(1, p + 1):
        b.append(h_phi_k * fact / B_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1.0 / fact
    R = torch.tensor([[rv ** (i - 1) for rv in r] for i in range(1, p + 1)], dtype=torch.float64)
    bt = torch.tensor(b, dtype=torch.float64)
    if p == 1:
        rho_p, rho_c = [], [0.5]
    else:
        rho_p = [0.5] if p == 2 else torch.linalg.solve(R[:-1, :-1], bt[:-1]).tolist()
        rho_c = torch.linalg.solve(R, bt).tolist()
    return B_h, rho_p, rho_c, r


def run_unipc(
    ctx: SamplerContext,
    x: Tensor,
    grid: Tensor,
    order: int = 3,
    variant: str = "bh2",
    corrector: bool = True,
    lower_order_final: bool = True,
    final_corrector: bool = False,
) -> Tensor:
    """UniPC (Zhao et al. 2023): multistep UniP predictor + UniC corrector, data prediction.

    In x_hat = x / m, with D the data prediction (Tweedie), h = lambda_{i+1} - lambda_i and
    D1_k = (D_{i-k} - D_i) / r_k (r_k = (lambda_{i-k} - lambda_i) / h):

        x_lin  = e^{-h} x_hat_i - expm1(-h) D_i
        UniP:  x_hat_{i+1} = x_lin - B(h) sum_k rho^p_k D1_k
        UniC:  x_hat^c_{i+1} = x_lin - B(h) (sum_k rho^c_k D1_k + rho^c_last (D(x_hat_{i+1}) - D_i))

    The evaluation D(x_hat_{i+1}) that drives the corrector is reused as D_{i+1} by the next
    predictor, so UniC costs no extra evaluation: ``steps`` evaluations in all (the last step is not
    corrected unless ``final_corrector``, which reuses the evaluation of the final denoising step: the
    corrected state is then returned as D(x_pred) + (x^c - x_pred), i.e. the Tweedie denoise with
    the unit Jacobian dD/dx = 1 + O(sigma^2 / s^2) -- exact to that order for small end noise).
    Orders: min(order, steps taken so far); with ``lower_order_final`` the last steps use
    min(order, steps left) (as DPM-Solver++ / UniPC do for few steps).
    Returns x at the grid's end; with ``final_corrector`` the already-denoised x at sigma = 0.
    """
    m, std, sig = (v.tolist() for v in sigma_of(ctx.sde, grid))
    lam = [-math.log(s) for s in sig]
    tt = grid.to(dtype=x.dtype, device=x.device)
    B = x.shape[0]
    S = len(grid) - 1
    hist: list[tuple[float, Tensor]] = []  # (lambda, D), newest last
    D_next = None
    ctx.record(x, grid[0])
    for i in ctx.steps(S, "unipc"):
        D0 = ctx.denoised(x, tt[i].expand(B), m[i], std[i], i) if D_next is None else D_next
        hist = (hist + [(lam[i], D0)])[-order:]
        k = len(hist)
        if lower_order_final:
            k = min(k, S - i)
        h = lam[i + 1] - lam[i]
        rks = [(hist[-(j + 1)][0] - lam[i]) / h for j in range(1, k)]
        D1s = [(hist[-(j + 1)][1] - D0) / rks[j - 1] for j in range(1, k)]
        B_h, rho_p, rho_c, _ = unipc_coefficients(h, rks, variant)
        x_lin = math.exp(-h) * (x / m[i]) - math.expm1(-h) * D0
        xh = x_lin
        for rho, d in zip(rho_p, D1s):
            xh = xh - (B_h * rho) * d
        x = ctx.project(m[i + 1] * xh, tt[i + 1].expand(B))
        last = i == S - 1
        D_next = None
        if corrector and (not last or final_corrector):
            D_next = ctx.denoised(x, tt[i + 1].expand(B), m[i + 1], std[i + 1], i + 1)
            xc = x_lin
            for rho, d in zip(rho_c[:-1], D1s):
                xc = xc - (B_h * rho) * d
            xc = xc - (B_h * rho_c[-1]) * (D_next - D0)
            if last:
                x = D_next + (xc - x / m[i + 1])
                x = ctx.project(x, torch.zeros(B, dtype=x.dtype, device=x.device))
                ctx.record(x, grid.new_zeros(()))
                return x
            x = ctx.project(m[i + 1] * xc, tt[i + 1].expand(B))
        ctx.record(x, grid[i + 1])
    return x
