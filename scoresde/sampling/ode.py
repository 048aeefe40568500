"""Probability-flow ODE (Song et al. 2021, eq. 13) through ``torchdiffeq.odeint``.

dx/dt = f(x, t) - 1/2 g(t)^2 s(x, t), integrated from t_start down to eps (sampling) or from eps
up to T (:func:`encode`, data -> latent). Adaptive solvers use ``rtol``/``atol`` (default
dopri5, 1e-5); fixed-step solvers run on the given grid. torchdiffeq's adaptive solvers probe
times outside the interval (initial step-size selection, last-step overshoot), so the dynamics
clamp t into [eps, T] before calling the score.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sampling.context import SamplerContext
from scoresde.solvers import ADAPTIVE_SOLVERS, FIXED_SOLVERS, ODE_SOLVERS

__all__ = ["ADAPTIVE_SOLVERS", "FIXED_SOLVERS", "ODE_SOLVERS", "run_ode"]


class _ProbabilityFlow(torch.nn.Module):
    def __init__(self, ctx: SamplerContext, t_lo: float, t_hi: float, batch: int):
        super().__init__()
        self.ctx, self.t_lo, self.t_hi, self.batch = ctx, t_lo, t_hi, batch

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        tv = t.clamp(self.t_lo, self.t_hi).to(x.dtype).expand(self.batch)
        sde = self.ctx.sde
        g2 = sde.diffusion(tv[:1]).to(x.dtype) ** 2
        score = self.ctx.score(x, tv)
        return sde.drift(x, tv) - 0.5 * g2 * score


def run_ode(
    ctx: SamplerContext,
    x: Tensor,
    ts: Tensor,
    solver: str = "dopri5",
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> tuple[Tensor, Tensor | None]:
    """Solve the PF-ODE through the times ``ts`` (float64, monotone; the grid for fixed solvers).

    Returns the final state and the states at all ``ts`` ([len(ts), B, *dims]).
    """
    from torchdiffeq import odeint

    t_lo, t_hi = float(ts.min()), float(ts.max())
    func = _ProbabilityFlow(ctx, t_lo, t_hi, x.shape[0])
    kwargs = {"rtol": rtol, "atol": atol} if solver in ADAPTIVE_SOLVERS else {}
    xs = odeint(func, x, ts.to(dtype=x.dtype, device=x.device), method=solver, **kwargs)
    return xs[-1], xs
