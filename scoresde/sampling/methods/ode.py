"""Probability-flow ODE (Song et al. 2021, eq. 13) through :func:`scoresde.solvers.odeint`.

dx/dt = f(x, t) - 1/2 g(t)^2 s(x, t) (the SDE's own drift, ``sde.reverse(score,
probability_flow=True)``), integrated from t_start down to eps (sampling) or from eps up to T
(:func:`scoresde.sampling.api.encode`, data -> latent). Adaptive solvers use ``rtol``/``atol``
(default dopri5, 1e-5); fixed-step solvers (``steps`` given) run on the options' grid.
torchdiffeq's adaptive solvers probe times outside the interval (initial step-size selection,
last-step overshoot), so the dynamics clamp t into [eps, T] before calling the score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde.sampling.checks import check_choice, check_positive
from scoresde.sampling.context import SamplerContext
from scoresde.sampling.loop import grid_for
from scoresde.sampling.registry import GridOptions, register_sampler
from scoresde.solvers import ADAPTIVE_SOLVERS, FIXED_SOLVERS, ODE_SOLVERS, odeint

__all__ = ["ODEOptions", "ode_solve", "run_ode"]


@dataclass(frozen=True)
class ODEOptions(GridOptions):
    """``steps`` None: an adaptive ``solver`` (default dopri5) with ``rtol`` / ``atol``; an
    integer fixes the grid for a fixed-step solver (default rk4). ``solver``: scoresde.solvers."""

    solver: str | None = None
    rtol: float = 1e-5
    atol: float = 1e-5

    @property
    def method(self) -> str:
        """The solver actually used (a name of scoresde.solvers.ODE_SOLVERS)."""
        if self.solver is not None:
            return self.solver
        return "dopri5" if self.steps is None else "rk4"

    def check(self) -> None:
        super().check()
        check_positive("rtol", self.rtol)
        check_positive("atol", self.atol)
        check_choice("solver", self.method, ODE_SOLVERS)
        if self.steps is not None and self.method in ADAPTIVE_SOLVERS:
            raise ValueError(
                f"steps fixes the grid: solver must be one of {list(FIXED_SOLVERS)}, "
                f"got {self.method!r} (leave steps=None for adaptive solvers)"
            )
        if self.steps is None and self.method in FIXED_SOLVERS:
            raise ValueError(f"solver {self.method!r} is fixed-step: pass steps")


class _Flow(torch.nn.Module):
    def __init__(self, ctx: SamplerContext, t_lo: float, t_hi: float, batch: int):
        super().__init__()
        self.ctx, self.t_lo, self.t_hi, self.batch = ctx, t_lo, t_hi, batch

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        tv = t.clamp(self.t_lo, self.t_hi).to(x.dtype).expand(self.batch)
        return self.ctx.probability_flow.drift(x, tv)


def ode_solve(
    ctx: SamplerContext, x: Tensor, ts: Tensor, solver: str, rtol: float, atol: float
) -> Tensor:
    """Solve the PF-ODE through the float64 times ``ts`` (monotone; the grid for fixed solvers);
    returns the states at all ``ts`` ([len(ts), B, *dims])."""

    func = _Flow(ctx, float(ts.min()), float(ts.max()), x.shape[0])
    kwargs = {"rtol": rtol, "atol": atol} if solver in ADAPTIVE_SOLVERS else {}
    return odeint(func, x, ts.to(dtype=x.dtype, device=x.device), method=solver, **kwargs)


def run_ode(ctx: SamplerContext, x: Tensor, opts: ODEOptions, t_start: float, eps: float):
    if opts.steps is None:
        ts = torch.linspace(t_start, eps, 21 if ctx.record_on else 2, dtype=torch.float64)
    else:
        ts = grid_for(ctx, opts, t_start, eps)
    xs = ode_solve(ctx, x, ts, opts.method, opts.rtol, opts.atol)
    ctx.record_all(xs, ts)
    return xs[-1]


register_sampler(
    "ode",
    ODEOptions,
    run_ode,
    stochastic=False,
    supports_project=False,
    summary="probability-flow ODE (Song et al. 2021, eq. 13), torchdiffeq dopri5 / fixed grid",
)
