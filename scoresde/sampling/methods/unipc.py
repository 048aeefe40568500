"""UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models"): multistep UniP predictor + UniC corrector, data prediction (Algorithms 2/3).

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
Warm-up: step i uses order min(order, i + 1); with ``lower_order_final`` the last steps use
min(order, steps left) (as DPM-Solver++ / UniPC do for few steps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde.sampling.checks import check_bool, check_choice
from scoresde.sampling.context import SamplerContext
from scoresde.sampling.loop import ScaledGridMethod, grid_for, run_grid
from scoresde.sampling.registry import MultistepOptions, register_sampler

__all__ = ["UNIPC_VARIANTS", "UniPCOptions", "run_unipc", "unipc_coefficients"]

UNIPC_VARIANTS = ("bh1", "bh2")


@dataclass(frozen=True)
class UniPCOptions(MultistepOptions):
    """``order`` 1..4, ``variant`` bh1 | bh2, ``unic`` (the corrector on/off), ``final_corrector``
    (UniC on the last step, fused with the final denoising), ``lower_order_final``; defaults:
    14 steps on the bump grid ending at sigma = 0.02 (15 NFE with the final step)."""

    ORDERS = (1, 2, 3, 4)
    steps: int | None = 14
    time_grid: str = "bump"
    end_sigma: float | None = 0.02
    variant: str = "bh2"
    lower_order_final: bool = True
    unic: bool = True
    final_corrector: bool = True

    def check(self) -> None:
        super().check()
        check_choice("variant", self.variant, UNIPC_VARIANTS)
        for key in ("lower_order_final", "unic", "final_corrector"):
            check_bool(key, getattr(self, key))


def unipc_coefficients(
    h: float, rks: list[float], variant: str = "bh2"
) -> tuple[float, list[float], list[float], list[float]]:
    """UniPC's coefficients for a data-prediction step of logSNR length h (Zhao et al. 2023,
    Alg. 2/3).

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


class _UniPC(ScaledGridMethod):
    name = "unipc"

    def __init__(self, sde, grid, opts: UniPCOptions):
        super().__init__(sde, grid)
        self.o = opts
        self.fuses_final = opts.unic and opts.final_corrector
        self.hist: list[tuple[float, Tensor]] = []  # (lambda, D), newest last
        self.D_next: Tensor | None = None

    def step(self, ctx, i, x, t, s):
        lam, m = self.lam, self.m
        D0 = ctx.denoised(x, t, i) if self.D_next is None else self.D_next
        self.D_next = None
        self.hist = (self.hist + [(lam[i], D0)])[-self.o.order :]
        k = len(self.hist)
        if self.o.lower_order_final:
            k = min(k, self.S - i)
        h = lam[i + 1] - lam[i]
        rks = [(self.hist[-(j + 1)][0] - lam[i]) / h for j in range(1, k)]
        self.D1s = [(self.hist[-(j + 1)][1] - D0) / rks[j - 1] for j in range(1, k)]
        self.B_h, rho_p, self.rho_c, _ = unipc_coefficients(h, rks, self.o.variant)
        self.D0 = D0
        self.x_lin = math.exp(-h) * (x / m[i]) - math.expm1(-h) * D0
        xh = self.x_lin
        for rho, d in zip(rho_p, self.D1s):
            xh = xh - (self.B_h * rho) * d
        return m[i + 1] * xh

    def _unic(self, D_next: Tensor) -> Tensor:
        xc = self.x_lin
        for rho, d in zip(self.rho_c[:-1], self.D1s):
            xc = xc - (self.B_h * rho) * d
        return xc - (self.B_h * self.rho_c[-1]) * (D_next - self.D0)

    def correct(self, ctx, i, x, s):
        if not self.o.unic or i == self.S - 1:
            return x
        self.D_next = ctx.denoised(x, s, i + 1)
        return ctx.project(self.m[i + 1] * self._unic(self.D_next), ctx.tvec(s, x))

    def finish(self, ctx, x, eps):
        D_next = ctx.denoised(x, eps, self.S)
        x = D_next + (self._unic(D_next) - x / self.m[self.S])
        x = ctx.project(x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device))
        ctx.record(x, eps.new_zeros(()))
        return x


def run_unipc(ctx: SamplerContext, x: Tensor, opts: UniPCOptions, t_start: float, eps: float):
    grid = grid_for(ctx, opts, t_start, eps)
    return run_grid(ctx, x, grid, _UniPC(ctx.sde, grid, opts))


register_sampler(
    "unipc",
    UniPCOptions,
    run_unipc,
    stochastic=False,
    summary="UniPC (Zhao et al. 2023): UniP-3 + UniC, bump grid to sigma 0.02",
)
