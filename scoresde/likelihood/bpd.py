"""Bits per dimension of discrete data under a continuous score model, by uniform dequantization.

Data are integers ``k in {0, ..., L-1}^D`` (``L = levels``: 256 for 8-bit images, 17 for sklearn
digits). Dequantize ``y = (k + u) / L`` with ``u ~ U[0, 1)^D``, so ``y`` lies in the bin
``[k/L, (k+1)/L)`` of volume ``L^-D``; the model sees ``x = lo + (hi - lo) y`` for
``data_range = (lo, hi)``. The discrete model ``P(k) = int_bin p_Y(y) dy`` satisfies (Jensen;
Theis et al. 2016, Ho et al. 2019)

    log P(k) >= E_u[ log p_X(x) ] + D log(hi - lo) - D log L,

because ``p_Y(y) = p_X(x) (hi - lo)^D``. Bits per dimension are the negated bound in base 2 per
dimension:

    bpd(k) = -E_u[ log p_X(x) ] / (D ln 2) + offset,    offset = log2(L) - log2(hi - lo).

For 256 levels: offset = 8 in [0, 1] and 8 - 1 = 7 in [-1, 1]; that 7 is the reference
implementation's "+7" (it only holds for centred data). For digits (L = 17) in [-1, 1] it is
log2(17) - 1 = 3.087. ``log p_X`` comes from :func:`log_likelihood` (log p_eps, the model's density
at t = eps).

Float inputs are taken in model range on the data grid ``x = lo + (hi - lo) k / (L - 1)`` (the
convention of :mod:`scoresde.data`), and mapped back to ``k`` exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from scoresde.likelihood.bounds import BOUNDS, ddpm_bound, elbo
from scoresde.likelihood.ode_likelihood import log_likelihood
from scoresde.sde import SDE

__all__ = [
    "BitsPerDimResult",
    "bits_per_dim",
    "bpd_offset",
    "dequantize",
    "nats_to_bpd",
    "to_levels",
]


@dataclass
class BitsPerDimResult:
    """Output of :func:`bits_per_dim`.

    Attributes:
        bpd: mean bits/dim over samples and dequantization draws (0-d tensor).
        stderr: standard error of ``bpd`` (over samples; over draws when B = 1), or None if
            B = R = 1.
        per_sample: [B] bits/dim of each sample, averaged over draws.
        per_draw: [R, B] bits/dim of every (draw, sample).
        nfe: score evaluations of the ODE solve.
        offset: log2(levels) - log2(hi - lo) added to -log p / (D ln 2) (0 for ``bound="ddpm"``,
            whose decoder is already discrete).
        point_stderr: [B] Monte-Carlo standard error of each ``per_sample`` value (the bound's,
            or the trace estimator's when it reports one), else None.
        bound: None for the ODE likelihood, else the bound's name.
    """

    bpd: Tensor
    stderr: Tensor | None
    per_sample: Tensor
    per_draw: Tensor
    nfe: int
    offset: float
    point_stderr: Tensor | None = None
    bound: str | None = None


def _check_range(data_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"data_range must be a pair (lo, hi), e.g. (-1, 1) or (0, 1); got {data_range!r}"
        )
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must satisfy lo < hi (finite), got {data_range!r}")
    return lo, hi


def _check_levels(levels: int) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an integer >= 2, got {levels!r}")
    return levels


def bpd_offset(levels: int, data_range: Sequence[float] = (-1.0, 1.0)) -> float:
    """log2(levels) - log2(hi - lo): 7 for 256 levels in [-1, 1], 8 in [0, 1]."""
    lo, hi = _check_range(data_range)
    return math.log2(_check_levels(levels)) - math.log2(hi - lo)


def nats_to_bpd(
    logp: Tensor, dim: int, levels: int, data_range: Sequence[float] = (-1.0, 1.0)
) -> Tensor:
    """bpd = -logp / (dim ln 2) + offset, for log-densities ``logp`` (nats) of dequantized data."""
    return -logp / (dim * math.log(2.0)) + bpd_offset(levels, data_range)


def to_levels(
    x: Tensor, levels: int, data_range: Sequence[float] = (-1.0, 1.0), atol: float = 1e-3
) -> Tensor:
    """Integer levels ``k`` (int64) of ``x``: integers are checked, floats in model range inverted.

    Floats must lie on the grid ``lo + (hi - lo) k / (levels - 1)`` (within ``atol`` of a level,
    measured in units of one level); anything else raises ``ValueError``.
    """
    levels = _check_levels(levels)
    lo, hi = _check_range(data_range)
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a Tensor, got {type(x).__name__}")
    if x.dtype == torch.bool:
        raise TypeError("x must be an integer or floating-point Tensor, got bool")
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise ValueError("x must be finite (it contains NaN or inf)")
        if x.numel() and (x.min() < lo - 1e-6 * (hi - lo) or x.max() > hi + 1e-6 * (hi - lo)):
            raise ValueError(
                f"x must lie in the declared data_range [{lo}, {hi}]; found values in "
                f"[{x.min().item():.4g}, "
                f"{x.max().item():.4g}]"
            )
        v = (x.double() - lo) / (hi - lo) * (levels - 1)
        k = v.round()
        if x.numel() and (v - k).abs().max() > atol:
            raise ValueError(
                f"x is not on the {levels}-level grid lo + (hi - lo) k / (levels - 1) of "
                f"data_range "
                f"[{lo}, {hi}]; pass integer levels (0..{levels - 1}) instead"
            )
        return k.long()
    if torch.is_complex(x):
        raise TypeError("x must be real")
    if x.numel() and (x.min() < 0 or x.max() > levels - 1):
        raise ValueError(
            f"integer x must lie in [0, levels - 1] = [0, {levels - 1}], got values in "
            f"[{x.min().item()}, {x.max().item()}]"
        )
    return x.long()


def dequantize(
    k: Tensor,
    levels: int,
    data_range: Sequence[float] = (-1.0, 1.0),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """x = lo + (hi - lo) (k + u) / levels with u ~ U[0, 1) (same shape as ``k``)."""
    lo, hi = _check_range(data_range)
    u = torch.rand(k.shape, generator=generator, dtype=dtype, device=k.device)
    return lo + (hi - lo) * (k.to(dtype) + u) / levels


def bits_per_dim(
    sde: SDE,
    score_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    levels: int = 256,
    data_range: Sequence[float] = (-1.0, 1.0),
    repeats: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    bound: str | None = None,
    bound_samples: int = 64,
    **likelihood_kwargs: Any,
) -> BitsPerDimResult:
    """Bits/dim of discrete data ``x`` [B, *dims] (see the module docstring for the formula).

    Args:
        x: integer levels in {0..levels-1} (any integer dtype), or floats in model range on the
            data grid ``lo + (hi - lo) k / (levels - 1)``.
        levels: number of discrete values per dimension (256 for 8-bit, 17 for digits).
        data_range: (lo, hi) of the model's input scaling, e.g. (-1, 1) or (0, 1).
        repeats: R dequantization draws per sample, stacked into one ODE solve (batch R * B).
        generator: draws the dequantization noise and the Hutchinson probes.
        dtype: float dtype of the dequantized data (default: ``x``'s if float, else float32).
        bound: None (the probability-flow ODE likelihood), ``"continuous"`` (the variational bound
            of :func:`scoresde.likelihood.bounds.elbo` on the same dequantized draws: an upper
            bound on bits/dim) or ``"ddpm"`` (DDPM's L_vlb with its discretized decoder on the
            grid values themselves, no dequantization; VP SDE only).
        bound_samples: Monte-Carlo draws per point of the bound.
        **likelihood_kwargs: passed to :func:`log_likelihood` (trace, method, rtol, atol, eps,
            probes, grad, independent); with a bound, ``eps`` and ``chain`` / ``variance`` (ddpm).

    Returns:
        BitsPerDimResult (``bpd`` mean, ``stderr``, ``per_sample`` [B], ``per_draw`` [R, B]).
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(
            f"x must be a Tensor of shape [B, *dims] with B >= 1, got "
            f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
        )
    if bound is not None and bound not in BOUNDS:
        raise ValueError(f"bound must be None or one of {BOUNDS}, got {bound!r}")
    if dtype is None:
        dtype = x.dtype if x.is_floating_point() else torch.float32
    k = to_levels(x, levels, data_range)
    B, D = x.shape[0], x[0].numel()
    if bound == "ddpm":
        lo, hi = _check_range(data_range)
        grid = lo + (hi - lo) * k.to(dtype) / (levels - 1)
        r = ddpm_bound(
            sde,
            score_fn,
            grid,
            levels,
            data_range,
            bound_samples,
            generator=generator,
            **likelihood_kwargs,
        )
        per_sample = -r.elbo / (D * math.log(2.0))
        return BitsPerDimResult(
            bpd=per_sample.mean(),
            stderr=per_sample.std() / math.sqrt(B) if B > 1 else None,
            per_sample=per_sample,
            per_draw=per_sample[None],
            nfe=bound_samples,
            offset=0.0,
            point_stderr=r.stderr / (D * math.log(2.0)),
            bound=bound,
        )
    draws = torch.cat([dequantize(k, levels, data_range, generator, dtype) for _ in range(repeats)])
    point_var = None
    if bound == "continuous":
        r = elbo(sde, score_fn, draws, bound_samples, generator=generator, **likelihood_kwargs)
        logp, nfe = r.elbo, bound_samples
        point_var = (r.stderr / (D * math.log(2.0))).reshape(repeats, B).pow(2).mean(0) / repeats
    else:
        res = log_likelihood(sde, score_fn, draws, generator=generator, **likelihood_kwargs)
        logp, nfe = res.logp, res.nfe
        if res.stderr is not None:
            point_var = (res.stderr / (D * math.log(2.0))).reshape(repeats, B).pow(2).mean(0)
            point_var = point_var / repeats
    per_draw = nats_to_bpd(logp, D, levels, data_range).reshape(repeats, B)
    per_sample = per_draw.mean(dim=0)
    stderr = None
    if B > 1:
        stderr = per_sample.detach().std() / math.sqrt(B)
    elif repeats > 1:
        stderr = per_draw.detach()[:, 0].std() / math.sqrt(repeats)
    return BitsPerDimResult(
        bpd=per_draw.mean(),
        stderr=stderr,
        per_sample=per_sample,
        per_draw=per_draw,
        nfe=nfe,
        offset=bpd_offset(levels, data_range),
        point_stderr=None if point_var is None else point_var.sqrt(),
        bound=bound,
    )
