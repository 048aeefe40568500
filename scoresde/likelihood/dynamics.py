"""The augmented probability-flow dynamics ``d/dt [x, l] = [f~(x, t), div f~(x, t)]``.

f~ = f - 1/2 g^2 s is the one probability-flow drift of :meth:`scoresde.sde.SDE.reverse`; the
divergence columns come from :mod:`scoresde.likelihood.trace`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from scoresde.likelihood.trace import (
    exact_divergence,
    resampled_divergence,
    vjp_quadratic_forms,
)
from scoresde.sde import SDE
from scoresde.solvers import ADAPTIVE_SOLVERS

__all__ = ["DEFAULT_FIXED_STEPS", "ProbabilityFlowDynamics", "solver_options", "state_norm"]

DEFAULT_FIXED_STEPS = 100


class _CountingScore:
    def __init__(self, score_fn: Callable[[Tensor, Tensor], Tensor]):
        self.score_fn = score_fn
        self.calls = 0

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        self.calls += 1
        return self.score_fn(x, t)


class ProbabilityFlowDynamics(nn.Module):
    """Augmented dynamics ``d/dt [x, l] = [f~(x, t), div f~(x, t)]`` on a flat state [B, D + C].

    ``C`` = number of divergence columns (K fixed probes, 1 for the exact trace, 1 + M for
    ``"resampled"``, which draws K fresh probes from ``generator`` at every call). Time is clamped
    to [eps, T]: torchdiffeq's initial step-size probe may evaluate outside the interval. When
    called with grad mode on (a differentiable solve, or the adjoint's backward pass) the divergence
    is built with ``create_graph=True`` so it is itself differentiable.
    """

    def __init__(
        self,
        sde: SDE,
        score_fn: Callable,
        shape,
        trace: str,
        probes: Tensor | None,
        eps: float,
        T: float,
        num_probes: int = 1,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        self.sde = sde
        self.counter = _CountingScore(score_fn)
        if isinstance(score_fn, nn.Module):
            self.score_module = score_fn  # registered, so its parameters are found by the adjoint
        self.reverse = sde.reverse(self.counter, probability_flow=True)
        self.shape = tuple(shape)
        self.dim = math.prod(self.shape[1:])
        self.trace = trace
        self.register_buffer("probes", probes, persistent=False)
        self.num_probes, self.generator = int(num_probes), generator
        self.eps, self.T = float(eps), float(T)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        create_graph = torch.is_grad_enabled()
        B = self.shape[0]
        with torch.enable_grad():
            x = y[:, : self.dim].reshape(self.shape)
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            tb = t.clamp(self.eps, self.T).to(dtype=y.dtype).expand(B)  # [] or [B] (torchode)
            drift = self.reverse.drift(x, tb)
            if self.trace == "exact":
                div = exact_divergence(drift, x, create_graph=create_graph)[:, None]  # [B, 1]
            elif self.trace == "resampled":
                div = resampled_divergence(
                    drift, x, self.num_probes, self.generator, create_graph=create_graph
                )  # [B, 1 + M]
            else:
                div = vjp_quadratic_forms(
                    drift, x, self.probes, create_graph=create_graph
                ).T  # [B, K]
        if not create_graph:
            drift, div = drift.detach(), div.detach()
        return torch.cat([drift.reshape(B, self.dim), div], dim=1)


def solver_options(method: str, ts: Tensor, options: dict | None, x_dim: int | None) -> dict:
    """torchdiffeq options for a solve over ``ts`` (eps first, T last): adaptive solvers end their
    last step exactly on T (no overshoot; eps going back in the adjoint) and control the error on
    the x columns only when ``x_dim`` is given; fixed-step ones take DEFAULT_FIXED_STEPS uniform
    steps. ``options`` override these."""
    opts: dict = {}
    if method in ADAPTIVE_SOLVERS:
        opts["step_t"] = ts[[0, -1]].clone()
        if x_dim is not None:
            opts["norm"] = state_norm(x_dim)
    else:
        opts["step_size"] = float(ts[-1] - ts[0]) / DEFAULT_FIXED_STEPS
    opts.update(options or {})
    return opts


def state_norm(x_dim: int | None) -> Callable[[Tensor], Tensor] | None:
    """RMS error norm over the first ``x_dim`` columns of the flat state [..., D + C] (the
    divergence columns of ``"resampled"`` are a quadrature, kept out of step-size control)."""
    if x_dim is None:
        return None
    return lambda v: v[..., :x_dim].pow(2).mean().sqrt()
