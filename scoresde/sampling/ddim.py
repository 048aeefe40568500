"""DDIM (Song, Meng & Ermon 2021, eq. 12) for any linear SDE.

With Tweedie's x0_hat = (x_t + std_t^2 s) / m_t and eps_hat = -std_t s, one step t -> s < t is

    x_s = m_s x0_hat + sqrt(std_s^2 - c^2) eps_hat + c z,
    c = eta * sqrt(b^2 std_s^2 / std_t^2),   b^2 = std_t^2 - (m_t / m_s)^2 std_s^2,

i.e. the posterior q(x_s | x_t, x0_hat) with its variance scaled by eta^2. eta = 0 is the
first-order exponential integrator of the probability-flow ODE (DPM-Solver-1); eta = 1 is DDPM's
ancestral step with sigma^2 = beta-tilde (Ho et al. 2020, Algorithm 2; for VE the SMLD ancestral
step of Song et al. 2021, eq. 47). The VP discrete chain's alphas_cumprod are replaced by the
continuous m(t)^2, so the grid may be any set of times. VE (m = 1) is the VE-DDIM variant.
"""

from __future__ import annotations

import math

from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.grids import transition

__all__ = ["ddim_step", "run_ddim"]


def ddim_step(
    ctx: SamplerContext, x: Tensor, i: int, t_vec: Tensor, t: Tensor, s: Tensor, eta: float
) -> Tensor:
    """One DDIM step from time t to s (float64 0-d tensors); t_vec is t as a [B] tensor."""
    sde = ctx.sde
    m_t, std_t = (float(v) for v in sde.marginal_coeffs(t))
    m_s, std_s = (float(v) for v in sde.marginal_coeffs(s))
    score = ctx.score(x, t_vec, i)
    x0 = (x + std_t**2 * score) / m_t
    eps_hat = -std_t * score
    c = 0.0
    if eta > 0:
        _, b2 = transition(sde, t, s)
        c = eta * math.sqrt(float(b2) * std_s**2 / std_t**2)
    out = m_s * x0 + math.sqrt(max(std_s**2 - c**2, 0.0)) * eps_hat
    if c > 0:
        out = out + c * ctx.noise.normal()
    return out


def run_ddim(ctx: SamplerContext, x: Tensor, grid: Tensor, eta: float = 0.0) -> Tensor:
    """DDIM over ``grid`` (float64 [S + 1], decreasing); ``project`` after every step."""
    tt = grid.to(dtype=x.dtype, device=x.device)
    B = x.shape[0]
    ctx.record(x, grid[0])
    for i in ctx.steps(len(grid) - 1, "ddim"):
        x = ddim_step(ctx, x, i, tt[i].expand(B), grid[i], grid[i + 1], eta)
        x = ctx.project(x, tt[i + 1].expand(B))
        ctx.record(x, grid[i + 1])
    return x
