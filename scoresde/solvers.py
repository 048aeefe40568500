"""The ODE solvers scoresde accepts: one list, shared by sampling and likelihood, and one
:func:`odeint` that runs them.

Adaptive solvers take ``rtol`` / ``atol``; fixed-step solvers run on a given time grid. All are
torchdiffeq's, except ``rk45``: the same Dormand-Prince 5(4) pair as ``dopri5`` (Dormand & Prince
1980), run by SciPy's ``solve_ivp(method="RK45")`` through torchdiffeq's ``scipy_solver``. It
works on the CPU in float64 with a NumPy round trip per evaluation and builds no autograd graph;
its per-step cost is lower than torchdiffeq's (whose stage sums run over a strided [*y, 7]
buffer): the 64-D mixture's x-only probability-flow solve (512 points, tolerance 1e-5) takes
74 evaluations in 0.11-0.13 s against dopri5's 80 in 0.17-0.20 s (the score itself: 1 ms each).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torchdiffeq
from torch import Tensor

__all__ = [
    "ADAPTIVE_SOLVERS",
    "FIXED_SOLVERS",
    "GRAPH_FREE_SOLVERS",
    "ODE_SOLVERS",
    "odeint",
]

ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "rk45")
FIXED_SOLVERS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")
ODE_SOLVERS = ADAPTIVE_SOLVERS + FIXED_SOLVERS
GRAPH_FREE_SOLVERS = {"rk45": "RK45"}  # scoresde name -> SciPy's: no graph, no custom norm


def odeint(
    func: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t: Tensor,
    method: str,
    rtol: float | None = None,
    atol: float | None = None,
    options: dict | None = None,
) -> Tensor:
    """``torchdiffeq.odeint(func, y0, t, ...)`` for any of ODE_SOLVERS: the states at the
    times ``t`` (monotone, either direction) [len(t), *y0.shape].

    For ``rk45`` the torchdiffeq-only options (``step_t``, ``norm``) are dropped (SciPy ends its
    last step on t[-1] itself; its error norm is the RMS over every element), and a decreasing
    ``t`` is solved in s = -t (torchdiffeq's SciPy wrapper integrates from min(t) to max(t)).
    """
    kw = {} if rtol is None else {"rtol": rtol, "atol": atol}
    if method not in GRAPH_FREE_SOLVERS:
        return torchdiffeq.odeint(func, y0, t, method=method, options=options, **kw)
    opts = {k: v for k, v in (options or {}).items() if k not in ("step_t", "norm")}
    opts["solver"] = GRAPH_FREE_SOLVERS[method]
    if len(t) > 1 and bool(t[-1] < t[0]):
        t, f = -t, func
        func = lambda s, y: -f(-s, y)
    with warnings.catch_warnings():  # the wrapper always passes min_step, which RK45 ignores
        warnings.filterwarnings("ignore", "The following arguments have no effect")
        with torch.no_grad():
            return torchdiffeq.odeint(func, y0, t, method="scipy_solver", options=opts, **kw)
