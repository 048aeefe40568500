"""Predictor-corrector sampling (Song et al. 2021, Algorithms 2-3).

For i = 0..S-1 on a grid t_0 = t_start > ... > t_S = eps: the predictor moves x from t_i to
t_{i+1}, ``project`` is applied, then the corrector runs its Langevin steps at t_{i+1} (the
paper's order). Euler-Maruyama, reverse diffusion and ancestral sampling are PC with corrector
``none``; NCSN's annealed Langevin dynamics is predictor ``none`` with corrector
``annealed_langevin`` on the levels t_1..t_S.
"""

from __future__ import annotations

from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.correctors import Corrector
from scoresde.sampling.predictors import NonePredictor, Predictor

__all__ = ["run_pc"]


def run_pc(
    ctx: SamplerContext, x: Tensor, grid: Tensor, predictor: Predictor, corrector: Corrector
) -> Tensor:
    """Run PC over ``grid`` (float64 [S + 1], decreasing). x: [B, *dims] at time grid[0]."""
    tt = grid.to(dtype=x.dtype, device=x.device)
    B = x.shape[0]
    moves = not isinstance(predictor, NonePredictor)
    ctx.record(x, grid[0])
    for i in ctx.steps(len(grid) - 1, "pc"):
        t_next = tt[i + 1].expand(B)
        x = predictor.step(ctx, x, i, tt[i].expand(B), grid[i], grid[i + 1])
        if moves:
            x = ctx.project(x, t_next)
        x = corrector.step(ctx, x, i, t_next, grid[i + 1])
        ctx.record(x, grid[i + 1])
    return x
