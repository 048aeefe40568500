"""Exact log-likelihood through the probability-flow ODE (Song et al. 2021, sec. 4.3 and app. D.2).

The probability-flow ODE ``dx/dt = f~(x, t) = f(x, t) - 1/2 g(t)^2 s(x, t)`` transports p_eps to
p_T, and the instantaneous change of variables (Chen et al. 2018, "Neural ODEs", thm. 1) gives

    d/dt log p_t(x(t)) = -div f~(x(t), t)
    =>  log p_eps(x) = log p_T(x(T)) + int_eps^T div f~(x(t), t) dt.

We integrate the augmented state ``[x(t), int_eps^t div f~]`` from ``t = eps`` to ``T`` with
``torchdiffeq`` in one batched solve on the tensor's device (one step-size sequence for the whole
batch), or with ``independent=True`` through ``torchode`` (every point its own step-size control,
so its value does not depend on the batch it is in; :mod:`scoresde.likelihood.independent`).
No autograd graph is built through the solve unless ``grad=True`` or ``adjoint=True``. Every
function evaluation costs one score evaluation and one vector-Jacobian product (K batched products
for K Hutchinson probes, D for the exact trace); the reference implementation evaluated the drift
twice per step and went through numpy. NFE is counted, not estimated.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torchdiffeq
from torch import Tensor, nn

from scoresde.likelihood.dynamics import ProbabilityFlowDynamics, solver_options
from scoresde.likelihood.independent import solve_independent
from scoresde.likelihood.quadrature import quadrature_log_likelihood
from scoresde.likelihood.trace import (
    FIXED_PROBE_TRACES,
    QUADRATURE_TRACES,
    TRACE_ESTIMATORS,
    VARIANCE_SIGNS,
    default_probes,
    draw_probes,
    resampled_stderr,
)
from scoresde.sde import SDE
from scoresde.solvers import GRAPH_FREE_SOLVERS, ODE_SOLVERS, odeint

__all__ = ["ODE_METHODS", "LikelihoodResult", "ProbabilityFlowDynamics", "log_likelihood"]

ODE_METHODS = ODE_SOLVERS


@dataclass
class LikelihoodResult:
    """Output of :func:`log_likelihood` (all per-sample tensors have shape [B], in nats).

    Attributes:
        logp: log p_eps(x) = prior_logp + delta_logp.
        prior_logp: log p_T(z) under the SDE's prior.
        delta_logp: int_eps^T div f~ dt (averaged over the Hutchinson probes).
        z: x(T), the encoding, shape of ``x``.
        nfe: score-function evaluations made by the forward solve.
        stderr: standard error of ``logp`` from the trace estimator ([B]): over the probes for
            fixed probes, from the per-evaluation variances for ``"resampled"``; None for one
            probe or ``exact``. Solver error is not included.
    """

    logp: Tensor
    prior_logp: Tensor
    delta_logp: Tensor
    z: Tensor
    nfe: int
    stderr: Tensor | None = None


def _check_args(
    sde: SDE,
    x: Tensor,
    trace: str,
    method: str,
    rtol: float,
    atol: float,
    eps: float,
    probes: int,
    adjoint: bool,
    grad: bool,
    independent: bool,
) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(
            f"x must be a floating-point Tensor [B, *dims], got {type(x).__name__}"
            + (f" of dtype {x.dtype}" if isinstance(x, Tensor) else "")
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape [B, *dims] with B >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite (it contains NaN or inf)")
    if trace not in TRACE_ESTIMATORS:
        raise ValueError(f"trace must be one of {TRACE_ESTIMATORS}, got {trace!r}")
    if method not in ODE_METHODS:
        raise ValueError(f"method must be None or one of {ODE_METHODS}, got {method!r}")
    if method in GRAPH_FREE_SOLVERS and (grad or adjoint or independent):
        raise ValueError(
            f"method={method!r} (SciPy) builds no graph and has one step size for the batch: "
            "it supports none of grad, adjoint, independent (use method='dopri5')"
        )
    if method in GRAPH_FREE_SOLVERS and trace == "resampled":
        raise ValueError(
            f"method={method!r} controls the error on every state column; trace='resampled' "
            "needs it on the x columns alone (use method='dopri5')"
        )
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v)
        ):
            raise ValueError(f"{name} must be a positive float, got {v!r}")
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and 0 < eps < sde.T):
        raise ValueError(f"eps must lie in (0, T) = (0, {sde.T}), got {eps!r}")
    if probes is not None and (
        isinstance(probes, bool) or not isinstance(probes, int) or probes < 1
    ):
        raise ValueError(f"probes must be None or an integer >= 1, got {probes!r}")
    for name, v in (("adjoint", adjoint), ("grad", grad), ("independent", independent)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be True or False, got {v!r}")
    if trace in QUADRATURE_TRACES and (adjoint or independent or (grad and trace == "hutchpp")):
        raise ValueError(f"trace={trace!r} supports none of adjoint, independent, grad (hutchpp)")
    if trace == "resampled" and adjoint:
        raise ValueError(
            "trace='resampled' draws new probes at every evaluation, which the adjoint's backward "
            f"solve cannot replay: use adjoint=True with trace in {('exact', *FIXED_PROBE_TRACES)}"
        )
    if independent and adjoint:
        raise ValueError("independent=True does not support adjoint=True (use grad=True)")
    if independent and method != "dopri5":
        raise ValueError(f"independent=True supports method='dopri5' only, got {method!r}")


def default_method(trace: str, device: torch.device | str, special: bool = False) -> str:
    """The solver of ``method=None``: ``rk45`` (SciPy's Dormand-Prince 5(4),
    :mod:`scoresde.solvers`) for the x-only solve of the quadrature traces on the CPU, unless
    ``special`` (a graph or per-point steps are asked for); else ``dopri5``."""
    cpu = torch.device(device).type == "cpu"
    return "rk45" if trace in QUADRATURE_TRACES and cpu and not special else "dopri5"


def _default_adjoint_params(score_fn: Callable) -> tuple:
    if isinstance(score_fn, nn.Module):
        return tuple(score_fn.parameters())
    owner = getattr(score_fn, "__self__", None)
    if isinstance(owner, nn.Module):
        return tuple(owner.parameters())
    warnings.warn(
        "adjoint=True but score_fn is not an nn.Module: gradients flow only to x. Pass the "
        "ScoreModel itself as score_fn, or its parameters as adjoint_params.",
        stacklevel=3,
    )
    return ()


def log_likelihood(
    sde: SDE,
    score_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    trace: str = "rademacher",
    method: str | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    probes: int | None = None,
    adjoint: bool = False,
    adjoint_params: Iterable[Tensor] | None = None,
    options: dict[str, Any] | None = None,
    grad: bool = False,
    independent: bool = False,
    nodes: int | None = None,
) -> LikelihoodResult:
    """log p_eps(x) in nats by integrating the probability-flow ODE from ``eps`` to ``T``.

    Args:
        sde: the forward SDE (VPSDE, SubVPSDE, VESDE, ...).
        score_fn: ``score_fn(x, t) -> s(x, t)``; a ScoreModel (nn.Module) or any callable.
        x: data [B, *dims] in model range, float32 or float64, on any device.
        trace: divergence estimator (:mod:`scoresde.likelihood.trace`): ``"exact"`` (D
            vector-Jacobian products per evaluation; for low dimensions), ``"rademacher"`` or
            ``"gaussian"`` (Hutchinson, probes fixed per solve), ``"resampled"`` (K fresh
            Rademacher probes per evaluation; lower per-point error at the same cost, and a
            standard error from 32 sign columns even for small K; needs K >= 2 for ``stderr``),
            ``"quadrature"`` (solve for x(t) alone, then a Clenshaw-Curtis rule in log std(t) on
            ``nodes`` exact-trace nodes; :mod:`scoresde.likelihood.quadrature`), ``"hutchpp"``
            (the same rule, randomized traces: :mod:`scoresde.likelihood.hutchpp`).
        method: an ODE solver (:mod:`scoresde.solvers`): adaptive ``dopri5``, ``dopri8``,
            ``bosh3``, ``fehlberg2``, ``adaptive_heun``, ``rk45`` (SciPy's Dormand-Prince; no
            graph); or fixed-step ``euler``, ``midpoint``, ``heun2``, ``heun3``, ``rk4``,
            ``explicit_adams``, ``implicit_adams`` (100 uniform steps unless ``options`` sets
            ``step_size``). None: :func:`default_method` (``rk45`` for the x-only solve of
            ``"quadrature"`` / ``"hutchpp"`` on the CPU without a graph, else ``dopri5``).
        rtol, atol: solver tolerances (always passed; torchdiffeq's own defaults are 1e-7 / 1e-9).
        eps: start time of the integration, in (0, T).
        generator: source of the Hutchinson probes.
        probes: K Hutchinson probes, averaged (K vector-Jacobian products per step; K >= 2:
            ``stderr``); ``"hutchpp"``: shared out among the nodes after the pilot; None: 1,
            or the trace's DEFAULT_PROBES.
        adjoint: use ``torchdiffeq.odeint_adjoint`` (O(1) memory gradients, e.g. likelihood
            training). Gradients go to ``adjoint_params`` (default: the parameters of ``score_fn``
            when it is an nn.Module) and to ``x``.
        adjoint_params: parameters to differentiate in adjoint mode.
        options: extra torchdiffeq solver options (override the defaults set here).
        grad: build the autograd graph through the solve (direct backpropagation). Default
            False: evaluation runs without a graph, as under ``torch.no_grad()``.
        independent: give every point its own step-size control (torchode's batched dopri5), so
            its log-likelihood does not depend on the other points of the batch.
        nodes: quadrature nodes n + 1 (odd, >= 3; None: the trace's DEFAULT_NODES) of the
            ``"quadrature"`` / ``"hutchpp"`` rule; ``stderr``: |rule - nested n/2 rule| (+ var).

    Returns:
        LikelihoodResult with ``logp`` [B] = ``prior_logp`` + ``delta_logp``, ``z`` = x(T), ``nfe``.
    """
    if method is None:
        device = x.device if isinstance(x, Tensor) else "cpu"
        method = default_method(trace, device, grad or adjoint or independent)
    _check_args(sde, x, trace, method, rtol, atol, eps, probes, adjoint, grad, independent)
    probes = default_probes(trace) if probes is None else probes
    args = (sde, score_fn, x, trace, method, rtol, atol, eps, generator, probes)
    tail = (adjoint, adjoint_params, options, independent, nodes)
    if torch.is_inference_mode_enabled():  # the divergence needs autograd: leave inference mode
        with torch.inference_mode(False), torch.no_grad():
            return _solve(*args[:2], x.clone(), *args[3:], False, None, options, independent, nodes)
    if not (grad or adjoint):
        with torch.no_grad():
            return _solve(*args, False, None, options, independent, nodes)
    return _solve(*args, *tail)


def _solve(
    sde,
    score_fn,
    x,
    trace,
    method,
    rtol,
    atol,
    eps,
    generator,
    probes,
    adjoint,
    adjoint_params,
    options,
    independent,
    nodes,
) -> LikelihoodResult:
    if trace in QUADRATURE_TRACES:
        delta_logp, z, _, nfe, stderr = quadrature_log_likelihood(
            sde, score_fn, x, nodes, method, rtol, atol, eps, options, trace, probes, generator
        )
        prior_logp = sde.prior_logp(z)
        return LikelihoodResult(prior_logp + delta_logp, prior_logp, delta_logp, z, nfe, stderr)
    T = float(sde.T)
    B = x.shape[0]
    fixed = trace in FIXED_PROBE_TRACES
    probe_vectors = draw_probes(trace, probes, x, generator) if fixed else None
    func = ProbabilityFlowDynamics(
        sde, score_fn, x.shape, trace, probe_vectors, eps, T, probes, generator
    )
    cols = probes if fixed else (1 + VARIANCE_SIGNS if trace == "resampled" else 1)
    y0 = torch.cat([x.reshape(B, -1), torch.zeros(B, cols, dtype=x.dtype, device=x.device)], dim=1)
    D = func.dim
    if independent:
        yT = solve_independent(
            func, y0, eps, T, rtol, atol, x_dim=D if trace == "resampled" else None
        )
    else:
        yT = _solve_shared(
            func,
            y0,
            eps,
            T,
            rtol,
            atol,
            method,
            options,
            adjoint,
            adjoint_params,
            score_fn,
            x_dim=D if trace == "resampled" else None,
        )
    z = yT[:, :D].reshape(x.shape)
    stderr = None
    if trace == "resampled":
        delta_logp = yT[:, D]
        if probes > 1:
            stderr = resampled_stderr(yT[:, D + 1 :].detach())
    else:
        per_probe = yT[:, D:]  # [B, cols]
        delta_logp = per_probe.mean(dim=1)
        if cols > 1:
            stderr = per_probe.detach().std(dim=1) / math.sqrt(cols)
    prior_logp = sde.prior_logp(z)
    return LikelihoodResult(
        logp=prior_logp + delta_logp,
        prior_logp=prior_logp,
        delta_logp=delta_logp,
        z=z,
        nfe=func.counter.calls,
        stderr=stderr,
    )


def _solve_shared(
    func, y0, eps, T, rtol, atol, method, options, adjoint, adjoint_params, score_fn, x_dim
) -> Tensor:
    """One torchdiffeq solve of the whole batch from eps to T; returns the state at T."""
    t_dtype = torch.float32 if y0.device.type == "mps" else torch.float64
    ts = torch.tensor([eps, T], dtype=t_dtype, device=y0.device)
    opts = solver_options(method, ts, options, x_dim)
    kw = {"rtol": rtol, "atol": atol, "method": method, "options": opts}
    if not adjoint:
        return odeint(func, y0, ts, **kw)[-1]
    params = adjoint_params if adjoint_params is not None else _default_adjoint_params(score_fn)
    sol = torchdiffeq.odeint_adjoint(
        func,
        y0,
        ts,
        **kw,
        adjoint_rtol=rtol,
        adjoint_atol=atol,
        adjoint_method=method,
        adjoint_options=dict(opts),
        adjoint_params=tuple(params),
    )
    return sol[-1]
