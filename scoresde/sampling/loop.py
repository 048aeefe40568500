"""The one loop of every grid sampler.

For i = 0..S-1 on a float64 grid t_0 = t_start > t_1 > ... > t_S = eps::

    x <- method.step(ctx, i, x, t_i, t_{i+1})       # the method's update (counts its NFE via ctx)
    x <- project(x, t_{i+1})                        # the user's hook (inpainting, ...)
    x <- method.correct(ctx, i, x, t_{i+1})         # optional corrector (PC's Langevin, UniC)
    record(x, t_{i+1}); progress bar

then, with ``denoise``, the final Tweedie step (``SamplerContext.final_denoise``) unless the method
fuses it (``method.finish``, e.g. UniC on the last step reusing that evaluation).
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.sampling.grids import sigma_of, time_grid
from scoresde.sampling.registry import GridOptions
from scoresde.sde import SDE

__all__ = ["GridMethod", "ScaledGridMethod", "grid_for", "run_grid"]


class GridMethod:
    """One method's step on the shared loop; subclasses hold their own multistep history.

    ``t`` and ``s`` are float64 0-d times, s < t. ``fuses_final``: :meth:`finish` performs the
    final denoising step itself (the loop then does not record the undenoised end state).
    """

    name = "grid"
    projects_step = True  # False: the step only relabels time (PC with predictor "none")
    fuses_final = False

    def step(self, ctx: SamplerContext, i: int, x: Tensor, t: Tensor, s: Tensor) -> Tensor:
        raise NotImplementedError

    def correct(self, ctx: SamplerContext, i: int, x: Tensor, s: Tensor) -> Tensor:
        return x

    def finish(self, ctx: SamplerContext, x: Tensor, eps: Tensor) -> Tensor:
        raise NotImplementedError


class ScaledGridMethod(GridMethod):
    """A method in EDM's scaled variables (Karras et al. 2022): x_t = m(t) (x_0 + sigma(t) n),
    sigma = std / m = exp(-lambda); the scaled state x_hat = x / m obeys

        d x_hat / d sigma = (x_hat - D(x_hat, sigma)) / sigma,   D = Tweedie's E[x_0 | x_t],

    for every linear SDE (VE: m = 1). Holds the grid's float64 coefficients as Python floats:
    ``m``, ``std``, ``sig`` (sigma), ``lam`` (lambda), index i = grid point i."""

    def __init__(self, sde: SDE, grid: Tensor):
        m, std, sig = sigma_of(sde, grid)
        self.m, self.std, self.sig = m.tolist(), std.tolist(), sig.tolist()
        self.lam = (-torch.log(sig)).tolist()
        self.S = len(grid) - 1


def grid_for(ctx: SamplerContext, opts: GridOptions, t_start: float, eps: float) -> Tensor:
    """The float64 grid [S + 1] of ``opts`` (S = opts.steps or sde.N; or ``opts.timesteps``)."""
    if opts.timesteps is not None:
        grid = torch.tensor(opts.timesteps, dtype=torch.float64)
        if abs(float(grid[0]) - t_start) > 1e-9 * max(1.0, abs(t_start)):
            raise ValueError(f"timesteps[0] must equal t_start = {t_start}, got {float(grid[0])}")
        return grid
    steps = ctx.sde.N if opts.steps is None else opts.steps
    return time_grid(
        ctx.sde,
        t_start,
        eps,
        steps,
        opts.time_grid,
        opts.rho,
        opts.lambda_center,
        opts.lambda_width,
    )


def run_grid(ctx: SamplerContext, x: Tensor, grid: Tensor, method: GridMethod) -> Tensor:
    """Run ``method`` over ``grid`` (float64 [S + 1], decreasing) from x [B, *dims] at grid[0]."""
    ctx.grid = grid
    S = len(grid) - 1
    fused = ctx.denoise and method.fuses_final
    ctx.record(x, grid[0])
    for i in ctx.steps(S, method.name):
        s = grid[i + 1]
        x = method.step(ctx, i, x, grid[i], s)
        if method.projects_step:
            x = ctx.project(x, ctx.tvec(s, x))
        x = method.correct(ctx, i, x, s)
        if not (fused and i == S - 1):
            ctx.record(x, s)
    if fused:
        x = method.finish(ctx, x, grid[-1])
        ctx.denoise_done = True
    return x
