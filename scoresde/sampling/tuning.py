"""Time grids fitted to one model: the few-step solver's grid chosen to reproduce a tight
probability-flow solve (in the spirit of "optimized time steps": Xue et al. 2024, Sabour et al.
2024 "Align Your Steps", which fit a model's schedule instead of a fixed formula).

From n prior draws x_T, the reference x_ref = Phi(x_T) is the probability-flow ODE solved tightly
(``ode``, rtol = atol = ``ref_tol``) to ``eps`` and denoised; the few-step result x = Phi_G(x_T)
runs ``method`` on the grid G with nfe evaluations (steps = nfe - 1 and the final Tweedie step)
from the same draws. With e_i = x_i - x_ref_i and the trapezoidal estimate of the change of
log p_eps between the two end points (exact for a Gaussian; it carries the second-order drop
-1/2 e^T H e that unbiased endpoint noise causes, not only the first-order s . e)

    d_i = 1/2 (s(x_i, eps) + s(x_ref_i, eps)) . e_i  ~  log p_eps(x_i) - log p_eps(x_ref_i),


    L(G) = mean_i d_i^2  +  mean_i |e_i|^2 / (D v)  +  w (mean_i d_i)^2,

v the mean per-coordinate variance of x_ref and w = ``bias_weight`` (the last term keeps the
mean log-density unbiased, which the first two only bound). G is parametrised in the logSNR
lambda = log(m / std): lambda_0 = lambda(t_start) fixed, the end lambda_S in
[``lambda_end_range``] through a logistic map, the S increments a softmax (each at least
``min_step`` of the mean step); L is minimised by Powell's derivative-free method (SciPy), so the
score function needs no gradients, from ``starts`` initial grids (uniform in lambda, denser in
the middle, denser towards the end) and once by continuation in the bias weight (1, then w),
``max_evals`` evaluations each; the landscape has poor local minima, so one start is not enough.
The best end point is kept. The grid is only as good as the draws it
saw: fit on seeds you will not evaluate on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scoresde.checks import check_size
from scoresde.sampling.api import sample
from scoresde.sampling.checks import check_positive
from scoresde.sampling.registry import GridOptions, get_sampler
from scoresde.sde import SDE, ScoreFn

__all__ = ["TimestepFit", "fit_timesteps"]


@dataclass(frozen=True)
class TimestepFit:
    """``timesteps`` (pass as ``sample(..., timesteps=fit.timesteps)``), the objective after the
    fit and before it (``initial_timesteps``: the uniform logSNR grid the fit starts from) and
    the number of objective evaluations; ``method`` and its ``options`` as fitted (a grid fitted
    to one method or order is not the right grid for another: ``sample(sde, score, shape,
    **fit.sample_kwargs)`` runs what was fitted)."""

    timesteps: tuple[float, ...]
    loss: float
    initial_timesteps: tuple[float, ...]
    initial_loss: float
    evaluations: int
    method: str = "unipc"
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_kwargs(self) -> dict[str, Any]:
        """``method``, ``timesteps`` and the fitted ``options``, as keyword arguments of
        :func:`scoresde.sample`."""
        return {"method": self.method, "timesteps": self.timesteps, **self.options}


def _grid(sde: SDE, theta: np.ndarray, lam0: float, lam_range, min_step: float) -> Tensor:
    lo, hi = lam_range
    lam_end = lo + (hi - lo) / (1.0 + math.exp(-float(theta[-1])))
    logits = theta[:-1] - theta[:-1].max()
    inc = np.exp(logits) / np.exp(logits).sum()
    S = len(inc)
    inc = min_step / S + (1.0 - min_step) * inc
    lam = lam0 + (lam_end - lam0) * np.concatenate([[0.0], np.cumsum(inc)])
    t = sde.t_from_log_snr(torch.tensor(lam, dtype=torch.float64))
    t[0] = float(sde.T)
    return t


def _fit_one(
    sde,
    score_fn,
    shape,
    method,
    nfe,
    seed,
    eps,
    ref_tol,
    bias_weight,
    lam,
    min_step,
    max_evals,
    starts,
    options,
):
    """One draw set's fit: (theta, its loss, the uniform grid's loss, evaluations, the loss of
    a grid on this set)."""
    n = shape[0]
    lam0, lam_range = lam

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    ref = sample(
        sde, score_fn, shape, method="ode", eps=eps, rtol=ref_tol, atol=ref_tol, generator=gen()
    ).x
    with torch.no_grad():
        t_eps = torch.full((n,), eps, dtype=ref.dtype, device=ref.device)
        s_ref = score_fn(ref, t_eps).reshape(n, -1)
    ref = ref.reshape(n, -1)
    v = float(ref.var(0).mean())

    def grid_loss(grid: Tensor, w: float | None = None) -> float:
        res = sample(
            sde,
            score_fn,
            shape,
            method=method,
            timesteps=tuple(grid.tolist()),
            generator=gen(),
            **options,
        )
        if res.nfe != nfe:
            raise ValueError(f"method {method!r} used {res.nfe} evaluations, not nfe = {nfe}")
        e = res.x.reshape(n, -1) - ref
        with torch.no_grad():
            s_x = score_fn(res.x, t_eps).reshape(n, -1)
        d = (e * 0.5 * (s_ref + s_x)).sum(1)
        w = bias_weight if w is None else w
        val = (d**2).mean() + (e**2).sum(1).mean() / (e.shape[1] * v) + w * d.mean() ** 2
        return float(val) if math.isfinite(float(val)) else math.inf

    def loss(theta: np.ndarray, w: float | None = None) -> float:
        return grid_loss(_grid(sde, theta, lam0, lam_range, min_step), w)

    from scipy.optimize import minimize

    theta0 = np.zeros(nfe)  # nfe - 1 increments + the end: a uniform logSNR grid
    initial = loss(theta0)
    u = (np.arange(nfe - 1) + 0.5) / (nfe - 1)
    inits = [theta0, np.append(-8.0 * (u - 0.5) ** 2, 0.0), np.append(1.5 * (u - 0.5), 0.0)]
    theta, best, used = theta0, initial, 1
    # Powell (restarted with fresh directions while it improves) from each start on the full
    # objective, and once more from the uniform grid by continuation: first with the bias weight
    # capped at 1, then the full weight from there (with a large weight from the start, a grid
    # whose errors cancel in the mean can be a poor local minimum); the best end point wins
    runs = [(x0, [bias_weight]) for x0 in inits[:starts]]
    if bias_weight > 1.0:
        runs.append((theta0, [1.0, bias_weight]))
    for x, stages in runs:
        for w in stages:
            reuse = x is theta0 and w == bias_weight  # the start already evaluated
            fx, budget = (initial if reuse else loss(x, w)), max_evals // len(stages)
            used += 0 if reuse else 1
            while budget > 0:
                opts = {"maxfev": budget, "xtol": 1e-4, "ftol": 1e-6}
                res = minimize(loss, x, args=(w,), method="Powell", options=opts)
                budget -= int(res.nfev)
                used += int(res.nfev)
                improved = float(res.fun) < fx * (1.0 - 1e-3)
                if float(res.fun) < fx:
                    x, fx = res.x, float(res.fun)
                if not improved:
                    break
        if fx < best:
            theta, best = x, fx
    return theta, best, initial, used, grid_loss


def fit_timesteps(
    sde: SDE,
    score_fn: ScoreFn,
    shape: tuple[int, ...],
    method: str = "unipc",
    nfe: int = 10,
    *,
    seed: int = 0,
    eps: float = 1e-3,
    ref_tol: float = 1e-6,
    bias_weight: float = 100.0,
    lambda_end_range: tuple[float, float] = (2.0, 6.0),
    min_step: float = 0.02,
    max_evals: int = 1000,
    starts: int = 3,
    draw_sets: int = 1,
    **options,
) -> TimestepFit:
    """Fit the ``nfe``-evaluation grid of ``method`` to ``score_fn`` (see the module docstring).

    ``shape`` = (n, *dims): n prior draws from ``seed``; ``draw_sets`` > 1: that many independent
    fits on n draws each (seeds seed, seed + 1, ...), and the grid whose loss averaged over all
    the sets is lowest is kept (``loss``: that average; ``initial_loss``: the uniform grid's mean
    over the sets); ``options``: the method's other options.
    The upper end of ``lambda_end_range`` is capped at lambda(1e-5).
    """
    spec = get_sampler(method)
    if not issubclass(spec.options, GridOptions):
        raise ValueError(f"method {method!r} has no time grid to fit (use a grid method)")  # noqa: TRY004
    nfe = check_size("nfe", nfe, 2)
    check_positive("bias_weight", bias_weight, allow_zero=True)
    check_size("max_evals", max_evals, 1)
    check_size("starts", starts, 1)
    check_size("draw_sets", draw_sets, 1)
    if starts > 3:
        raise ValueError(f"starts must be 1, 2 or 3, got {starts!r}")
    if not 0 <= min_step < 1:
        raise ValueError(f"min_step must be in [0, 1), got {min_step!r}")
    lo, hi = (float(v) for v in lambda_end_range)
    hi = min(hi, float(sde.log_snr(torch.tensor(1e-5, dtype=torch.float64))))
    if not lo < hi:
        raise ValueError(f"lambda_end_range must be (lo, hi) with lo < hi, got {lambda_end_range}")
    lam0 = float(sde.log_snr(torch.tensor(float(sde.T), dtype=torch.float64)))
    lam = (lam0, (lo, hi))
    fits = [
        _fit_one(sde, score_fn, shape, method, nfe, seed + k, eps, ref_tol, bias_weight, lam,
                 min_step, max_evals, starts, options)
        for k in range(draw_sets)
    ]  # fmt: skip
    start = _grid(sde, np.zeros(nfe), lam0, (lo, hi), min_step)
    initial = float(np.mean([f[2] for f in fits]))
    grids = [_grid(sde, theta, lam0, (lo, hi), min_step) for theta, *_ in fits]
    if draw_sets == 1:
        loss, best = fits[0][1], 0
    else:  # every set's grid scored on every set: the grid that generalizes best is kept
        scores = [float(np.mean([f[4](g) for f in fits])) for g in grids]
        best = int(np.argmin(scores))
        loss = scores[best]
    used = sum(f[3] for f in fits) + (draw_sets**2 if draw_sets > 1 else 0)
    return TimestepFit(
        tuple(grids[best].tolist()), loss, tuple(start.tolist()), initial, used, method, options
    )
