"""Batch-independent probability-flow solves: every point its own step-size control.

torchdiffeq integrates a batch as one state with one step-size sequence, so a point's result
depends (within tolerance) on the other points in its batch. ``torchode`` (Lienen & Guennemann
2022, "torchode: A Parallel ODE Solver for PyTorch") keeps a separate time, step size, error ratio
and accept/reject decision per batch row: with the same per-row error norm (RMS over that row),
a point takes the same steps alone or in any batch, so its log-likelihood is batch independent
(up to floating-point differences of batched kernels, ~1e-12 relative in float64).
"""

from __future__ import annotations

import torch
import torchode
from torch import Tensor, nn

__all__ = ["solve_independent"]


class _PerRowNorm:
    """RMS over the first ``x_dim`` columns of each row (all columns when None): [B, F] -> [B]."""

    def __init__(self, x_dim: int | None):
        self.x_dim = x_dim

    def __call__(self, v: Tensor) -> Tensor:
        v = v if self.x_dim is None else v[:, : self.x_dim]
        return v.pow(2).mean(dim=1).sqrt()


def solve_independent(
    func: nn.Module, y0: Tensor, eps: float, T: float, rtol: float, atol: float, x_dim: int | None
) -> Tensor:
    """Integrate ``dy/dt = func(t [B], y [B, F])`` from eps to T per row with torchode's dopri5
    and an integral (I) step-size controller; returns y(T) [B, F]."""
    term = torchode.ODETerm(func)
    controller = torchode.IntegralController(
        atol=atol, rtol=rtol, term=term, norm=_PerRowNorm(x_dim)
    )
    solver = torchode.AutoDiffAdjoint(torchode.Dopri5(term=term), controller)
    B = y0.shape[0]
    t_eval = torch.tensor([eps, T], dtype=y0.dtype, device=y0.device).expand(B, 2)
    problem = torchode.InitialValueProblem(y0, t_eval[:, 0], t_eval[:, 1], t_eval)
    sol = solver.solve(problem)
    bad = sol.status != torchode.Status.SUCCESS.value
    if bad.any():
        raise FloatingPointError(
            f"independent solve failed for points {bad.nonzero().flatten()[:10].tolist()} "
            f"(torchode status {sol.status[bad][:10].tolist()})"
        )
    return sol.ys[:, -1]
