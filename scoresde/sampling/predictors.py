"""Predictors: one reverse step from time t to s < t (Song et al. 2021, sec. 4.2 and app. E/F).

Each is a small object with ``step(ctx, x, i, t_vec, t, s) -> x`` where ``t``, ``s`` are float64
0-d times and ``t_vec`` is t as a [B] tensor in x's dtype; h = t - s > 0.
"""

from __future__ import annotations

import math

from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.ddim import ddim_step
from scoresde.sampling.grids import transition

__all__ = [
    "PREDICTORS",
    "AncestralPredictor",
    "EulerMaruyamaPredictor",
    "NonePredictor",
    "Predictor",
    "ReverseDiffusionPredictor",
]


class Predictor:
    name = "base"

    def step(
        self, ctx: SamplerContext, x: Tensor, i: int, t_vec: Tensor, t: Tensor, s: Tensor
    ) -> Tensor:
        raise NotImplementedError


class EulerMaruyamaPredictor(Predictor):
    """x_s = x_t - h [f(x_t, t) - g(t)^2 s(x_t, t)] + g(t) sqrt(h) z  (reverse SDE, eq. 6)."""

    name = "euler_maruyama"

    def step(self, ctx, x, i, t_vec, t, s):
        h = float(t - s)
        g = float(ctx.sde.diffusion(t))
        score = ctx.score(x, t_vec, i)
        x_mean = x - h * ctx.sde.drift(x, t_vec) + (h * g * g) * score
        return x_mean + (g * math.sqrt(h)) * ctx.noise.normal()


class ReverseDiffusionPredictor(Predictor):
    """Reverse diffusion (eqs. 46-47): x_s = x_t - f_i + G_i^2 s + G_i z for the forward chain
    x_t = x_s + f_i + G_i z, whose coefficients are the exact kernel's, f_i = (a - 1) x,
    G_i^2 = b^2 (see :func:`~scoresde.sampling.grids.transition`). On the uniform grid with
    steps = N this is the DDPM (VP) / SMLD (VE) chain of ``sde.discretize`` up to O(1/N^2)."""

    name = "reverse_diffusion"

    def step(self, ctx, x, i, t_vec, t, s):
        a, b2 = (float(v) for v in transition(ctx.sde, t, s))
        score = ctx.score(x, t_vec, i)
        return (2.0 - a) * x + b2 * score + math.sqrt(b2) * ctx.noise.normal()


class AncestralPredictor(Predictor):
    """Ancestral sampling: DDPM Algorithm 2 (VP, with sigma^2 = beta-tilde) and SMLD's
    counterpart (VE), x_s = (x_t + b^2 s) / a + sqrt(b^2 std_s^2 / std_t^2) z -- the DDIM step with
    eta = 1, exact posterior of the chain given Tweedie's x0; defined for any linear SDE."""

    name = "ancestral"

    def step(self, ctx, x, i, t_vec, t, s):
        return ddim_step(ctx, x, i, t_vec, t, s, eta=1.0)


class NonePredictor(Predictor):
    """No predictor: the state is only relabelled to time s (pure annealed Langevin / correctors)."""

    name = "none"

    def step(self, ctx, x, i, t_vec, t, s):
        return x


PREDICTORS: dict[str, type[Predictor]] = {
    c.name: c
    for c in (EulerMaruyamaPredictor, ReverseDiffusionPredictor, AncestralPredictor, NonePredictor)
}
