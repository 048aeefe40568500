"""Predictors: one reverse step from time t to s < t (Song et al. 2021, sec. 4.2 and app. E/F).

Each is a small object with ``step(ctx, i, x, t, s) -> x`` where ``t``, ``s`` are float64 0-d
times, h = t - s > 0. :data:`PREDICTORS` is the live registry ``method="pc"`` reads.
"""

from __future__ import annotations

import math

from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.grids import transition

__all__ = [
    "PREDICTORS",
    "AncestralPredictor",
    "EulerMaruyamaPredictor",
    "NonePredictor",
    "Predictor",
    "ReverseDiffusionPredictor",
    "ddim_step",
]


def ddim_step(ctx: SamplerContext, i: int, x: Tensor, t: Tensor, s: Tensor, eta: float) -> Tensor:
    """One DDIM step t -> s (Song, Meng & Ermon 2021, eq. 12; see scoresde.sampling.methods.ddim):
    x_s = m_s x0_hat + sqrt(std_s^2 - c^2) eps_hat + c z, c = eta sqrt(b^2 std_s^2 / std_t^2)."""
    sde = ctx.sde
    m_s, std_s = (float(v) for v in sde.marginal_coeffs(s))
    std_t = float(sde.marginal_coeffs(t)[1])
    x0 = ctx.denoised(x, t, i)
    eps_hat = (x - float(sde.marginal_coeffs(t)[0]) * x0) / std_t  # = -std_t s(x, t)
    c = 0.0
    if eta > 0:
        _, b2 = transition(sde, t, s)
        c = eta * math.sqrt(float(b2) * std_s**2 / std_t**2)
    out = m_s * x0 + math.sqrt(max(std_s**2 - c**2, 0.0)) * eps_hat
    if c > 0:
        out = out + c * ctx.noise.normal()
    return out


class Predictor:
    name = "base"
    moves = True  # False: only relabels time (no project after it)

    def step(self, ctx: SamplerContext, i: int, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        raise NotImplementedError


class EulerMaruyamaPredictor(Predictor):
    """x_s = x_t - h [f(x_t, t) - g(t)^2 s(x_t, t)] + g(t) sqrt(h) z  (reverse SDE, eq. 6)."""

    name = "euler_maruyama"

    def step(self, ctx, i, x, t, s):
        h = float(t - s)
        g = float(ctx.sde.diffusion(t))
        tv = ctx.tvec(t, x)
        x_mean = x - h * ctx.reverse_sde.drift(x, tv, score=ctx.score(x, tv, i))
        return x_mean + (g * math.sqrt(h)) * ctx.noise.normal()


class ReverseDiffusionPredictor(Predictor):
    """Reverse diffusion (eqs. 46-47): x_s = x_t - f_i + G_i^2 s + G_i z for the forward chain
    x_t = x_s + f_i + G_i z, whose coefficients are the exact kernel's, f_i = (a - 1) x,
    G_i^2 = b^2 (see :func:`~scoresde.sampling.grids.transition`). On the uniform grid with
    steps = N this is the DDPM (VP) / SMLD (VE) chain of ``sde.discretize`` up to O(1/N^2)."""

    name = "reverse_diffusion"

    def step(self, ctx, i, x, t, s):
        a, b2 = (float(v) for v in transition(ctx.sde, t, s))
        score = ctx.score(x, ctx.tvec(t, x), i)
        return (2.0 - a) * x + b2 * score + math.sqrt(b2) * ctx.noise.normal()


class AncestralPredictor(Predictor):
    """Ancestral sampling: DDPM Algorithm 2 (VP, with sigma^2 = beta-tilde) and SMLD's
    counterpart (VE), x_s = (x_t + b^2 s) / a + sqrt(b^2 std_s^2 / std_t^2) z -- the DDIM step with
    eta = 1, exact posterior of the chain given Tweedie's x0; defined for any linear SDE."""

    name = "ancestral"

    def step(self, ctx, i, x, t, s):
        return ddim_step(ctx, i, x, t, s, eta=1.0)


class NonePredictor(Predictor):
    """No predictor: the state is only relabelled to time s (pure annealed Langevin/correctors)."""

    name = "none"
    moves = False

    def step(self, ctx, i, x, t, s):
        return x


PREDICTORS: dict[str, type[Predictor]] = {
    c.name: c
    for c in (EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralPredictor, NonePredictor)
}
