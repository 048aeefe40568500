"""Denoising score matching losses.

References: Vincent 2011; Song et al. 2021; Ho et al. 2020; Song & Ermon 2019.

Continuous time (:func:`dsm_loss`, Song et al. 2021, eq. 7)::

    t ~ U(eps, T),  z ~ N(0, I),  x_t = m(t) x_0 + std(t) z
    loss = lambda(t) || s(x_t, t) + z / std(t) ||^2

- ``weighting="sigma2"``: lambda = std(t)^2, i.e. ``|| std s + z ||^2`` (the paper's default).
- ``weighting="likelihood"``: lambda = g(t)^2, which makes the loss an upper bound on the
  negative log-likelihood (Song, Durkan, Murray & Ermon 2021, "Maximum likelihood training of
  score-based diffusion models"). Written as ``g^2 / std^2 || std s + z ||^2``.
- ``importance_sampling=True`` (likelihood weighting only): sample t from the density
  ``q(t) = g(t)^2 / (std(t)^2 Z)`` on [eps, T] (``Z = int_eps^T g^2 / std^2 dt``) by its exact
  inverse CDF and drop the per-sample weight: ``loss = Z / (T - eps) || std s + z ||^2``. Because
  ``E_q[Z f] = int g^2/std^2 f dt = (T - eps) E_U[g^2/std^2 f]``, this has *exactly* the
  expectation of the explicitly weighted loss, with far lower variance (the weight
  g^2/std^2 ~ 1/t blows up at small t). (The reference multiplies by Z alone; the expectations
  then differ by the constant T - eps.) Closed forms of F(t) = int g^2/std^2 dt:

      VP:     g^2/std^2 = beta / (1 - e^{-B}),               F = log(e^B - 1)
      sub-VP: g^2/std^2 = beta (1 + e^{-B}) / (1 - e^{-B}),  F = 2 log(e^B - 1) - B
      VE:     g^2/std^2 = 2L e^{2Lt} / (e^{2Lt} - 1),        F = log(e^{2Lt} - 1)

  with B = int_0^t beta and L = log(sigma_max / sigma_min).

Discrete chains (the model is always a *score* model ``model(x, t)``, so a
:class:`~scoresde.score.ScoreModel` trains with any of these losses):

- :func:`ddpm_loss`: DDPM's L_simple ``|| z - eps_hat ||^2`` on the VP chain, i ~ U{0..N-1},
  ``x_i = sqrt(abar_i) x_0 + sqrt(1 - abar_i) z``, with ``eps_hat = -sqrt(1 - abar_i) s``.
- :func:`ncsn_loss`: NCSN's noise-conditional loss with lambda(sigma) = sigma^2 on the SMLD
  noise levels, ``|| sigma_i s + z ||^2`` (the paper has an extra factor 1/2; we follow the
  reference implementation so that all three losses share one scale).

In both the model is called at the continuous time whose perturbation kernel has exactly the
discrete chain's noise level (VP: m(t)^2 = abar_i, roughly t = (i + 1) / (N - 1); VE:
std(t) = sigma_i). Calling it at t_i = i / (N - 1) instead would give t = 0 for i = 0, where
std(0) = 0 and the eps parameterization divides by zero.

All losses: ``reduce`` ("mean" or "sum") over the data dimensions, then the mean over the batch
(or the per-sample values with ``per_sample=True``). A non-finite ``x0`` raises ``ValueError``; a
non-finite model output or loss raises ``FloatingPointError`` naming the times.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from scoresde.sde import SDE, VESDE, VPSDE, SubVPSDE, batch_view

__all__ = [
    "REDUCTIONS",
    "WEIGHTINGS",
    "ddpm_loss",
    "dsm_loss",
    "importance_normalizer",
    "likelihood_weight",
    "likelihood_weight_integral",
    "ncsn_loss",
    "sample_importance_time",
]

WEIGHTINGS = ("sigma2", "likelihood")
REDUCTIONS = ("mean", "sum")


# ---------------------------------------------------------------------------- helpers
def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_x0(x0: Tensor) -> None:
    if not isinstance(x0, Tensor) or not x0.is_floating_point():
        raise TypeError(f"x0 must be a floating-point tensor [B, *dims], got {type(x0).__name__}")
    if x0.dim() < 1 or x0.shape[0] == 0:
        raise ValueError(f"x0 must have shape [B, *dims] with B >= 1, got {tuple(x0.shape)}")
    if not torch.isfinite(x0).all():
        bad = (~torch.isfinite(x0.reshape(x0.shape[0], -1))).any(1).nonzero().flatten()
        raise ValueError(f"x0 contains non-finite values (samples {bad[:10].tolist()})")


def _call(model: Callable, x: Tensor, t: Tensor, y: Tensor | None) -> Tensor:
    return model(x, t) if y is None else model(x, t, y=y)


def _check_finite(name: str, value: Tensor, t: Tensor) -> None:
    flat = value.reshape(value.shape[0], -1) if value.dim() > 0 else value.reshape(1, 1)
    bad = (~torch.isfinite(flat)).any(1)
    if bad.any():
        ts = (
            t.reshape(-1)[bad.nonzero().flatten()[:10]].tolist() if t.numel() == bad.numel() else []
        )
        raise FloatingPointError(f"{name} is non-finite at t = {[float(f'{v:.6g}') for v in ts]}")


def _reduce(sq: Tensor, reduce: str) -> Tensor:
    flat = sq.reshape(sq.shape[0], -1)
    return flat.mean(1) if reduce == "mean" else flat.sum(1)


def _finish(per: Tensor, t: Tensor, per_sample: bool, check: bool) -> Tensor:
    if check:
        _check_finite("loss", per, t)
    return per if per_sample else per.mean()


def _t_from_integrated_beta(sde: VPSDE | SubVPSDE, B: Tensor) -> Tensor:
    """Invert B(t) = int_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2 (stable form)."""
    db = sde.beta_max - sde.beta_min
    return 2.0 * B / (sde.beta_min + torch.sqrt(sde.beta_min**2 + 2.0 * db * B))


# ---------------------------------------------------------------------------- importance sampling
def likelihood_weight(sde: SDE, t: Tensor) -> Tensor:
    """g(t)^2 / std(t)^2, the density (up to Z) that t is importance-sampled from, shape of t."""
    _, std = sde.marginal_coeffs(t)
    return sde.diffusion(t) ** 2 / std**2


def likelihood_weight_integral(sde: SDE, t: Tensor) -> Tensor:
    """F(t), an antiderivative of g^2 / std^2 in closed form (float64 recommended)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    if isinstance(sde, (VPSDE, SubVPSDE)):
        B = -2.0 * sde.log_mean_coeff(t)
        log_em1 = torch.log(torch.expm1(B))
        return log_em1 if isinstance(sde, VPSDE) else 2.0 * log_em1 - B
    if isinstance(sde, VESDE):
        L = math.log(sde.sigma_max / sde.sigma_min)
        return torch.log(torch.expm1(2.0 * L * t))
    raise ValueError(
        f"importance sampling supports VPSDE, SubVPSDE and VESDE, got {type(sde).__name__}"
    )


def _inverse_weight_integral(sde: SDE, v: Tensor) -> Tensor:
    """t with F(t) = v (inverse of :func:`likelihood_weight_integral`)."""
    if isinstance(sde, VPSDE):
        return _t_from_integrated_beta(sde, F.softplus(v, threshold=30.0))  # e^B = 1 + e^v
    if isinstance(sde, SubVPSDE):
        # (w - 1)^2 / w = a := e^v with w = e^B  =>  w - 1 = (a + sqrt(a (a + 4))) / 2
        a = torch.exp(v)
        B = torch.log1p(0.5 * (a + torch.sqrt(a * (a + 4.0))))
        return _t_from_integrated_beta(sde, B)
    if isinstance(sde, VESDE):
        L = math.log(sde.sigma_max / sde.sigma_min)
        return F.softplus(v, threshold=30.0) / (2.0 * L)
    raise ValueError(
        f"importance sampling supports VPSDE, SubVPSDE and VESDE, got {type(sde).__name__}"
    )


def importance_normalizer(sde: SDE, eps: float = 1e-5) -> float:
    """Z = int_eps^T g(t)^2 / std(t)^2 dt."""
    F_ = likelihood_weight_integral(sde, torch.tensor([eps, sde.T], dtype=torch.float64))
    return float(F_[1] - F_[0])


def sample_importance_time(
    sde: SDE,
    batch: int,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """Draw t [batch] on [eps, T] with density g^2 / (std^2 Z) by the exact inverse CDF."""
    if device is None and generator is not None:
        device = generator.device
    u = torch.rand(batch, generator=generator, dtype=torch.float64, device=device)
    F_ = likelihood_weight_integral(sde, torch.tensor([eps, sde.T], dtype=torch.float64)).to(
        u.device
    )
    t = _inverse_weight_integral(sde, F_[0] + u * (F_[1] - F_[0]))
    return t.clamp(eps, sde.T).to(dtype)


# ---------------------------------------------------------------------------- continuous DSM
def dsm_loss(
    model: Callable,
    sde: SDE,
    x0: Tensor,
    *,
    weighting: str = "sigma2",
    importance_sampling: bool = False,
    eps: float = 1e-5,
    reduce: str = "mean",
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    per_sample: bool = False,
    check_finite: bool = True,
) -> Tensor:
    """Continuous-time denoising score matching loss (module docstring), a scalar.

    Args:
        model: ``model(x, t)`` (or ``model(x, t, y=y)`` when ``y`` is given) -> score like x.
        sde: forward SDE.
        x0: data batch [B, *dims].
        weighting: ``"sigma2"`` (lambda = std^2) or ``"likelihood"`` (lambda = g^2).
        importance_sampling: likelihood weighting only: t ~ g^2/std^2 (same expectation).
        eps: smallest time; t lies in [eps, T].
        reduce: ``"mean"`` or ``"sum"`` over data dimensions.
        y: optional labels [B] passed to the model.
        generator: source of t and z (same generator state, same draws).
        per_sample: return the [B] per-sample losses instead of their mean.
        check_finite: raise on non-finite x0 / model output / loss.
    """
    _check_choice("weighting", weighting, WEIGHTINGS)
    _check_choice("reduce", reduce, REDUCTIONS)
    if importance_sampling and weighting != "likelihood":
        raise ValueError("importance_sampling=True needs weighting='likelihood'")
    if not 0.0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T={sde.T}), got {eps!r}")
    if check_finite:
        _check_x0(x0)
    B, dtype, device = x0.shape[0], x0.dtype, x0.device
    if importance_sampling:
        t = sample_importance_time(sde, B, eps, generator, dtype, device)
    else:
        u = torch.rand(B, generator=generator, dtype=dtype, device=device)
        t = eps + u * (sde.T - eps)
    z = torch.randn(x0.shape, generator=generator, dtype=dtype, device=device)
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + batch_view(std, x0) * z
    score = _call(model, xt, t, y)
    if check_finite:
        _check_finite("model output", score, t)
    per = _reduce((batch_view(std, score) * score + z) ** 2, reduce)
    if weighting == "likelihood":
        if importance_sampling:
            per = per * (importance_normalizer(sde, eps) / (sde.T - eps))
        else:
            per = per * likelihood_weight(sde, t)
    return _finish(per, t, per_sample, check_finite)


# ---------------------------------------------------------------------------- discrete losses
def _discrete_index(sde: SDE, B: int, generator, device) -> Tensor:
    if device is None and generator is not None:
        device = generator.device
    return torch.randint(0, sde.N, (B,), generator=generator, device=device)


def _discrete_dsm(
    model: Callable,
    x0: Tensor,
    t: Tensor,
    m: Tensor,
    std: Tensor,
    y,
    generator,
    reduce: str,
    per_sample: bool,
    check_finite: bool,
) -> Tensor:
    """The loss at chain noise levels (float64 t, m, std [B]): x = m x0 + std z,
    ``|| std s(x, t) + z ||^2`` reduced over data dimensions."""
    dtype = x0.dtype
    t, m, std = t.to(dtype), m.to(dtype), std.to(dtype)
    z = torch.randn(x0.shape, generator=generator, dtype=dtype, device=x0.device)
    xt = batch_view(m, x0) * x0 + batch_view(std, x0) * z
    score = _call(model, xt, t, y)
    if check_finite:
        _check_finite("model output", score, t)
    per = _reduce((batch_view(std, score) * score + z) ** 2, reduce)
    return _finish(per, t, per_sample, check_finite)


def ddpm_loss(
    model: Callable,
    sde: VPSDE,
    x0: Tensor,
    *,
    reduce: str = "mean",
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    per_sample: bool = False,
    check_finite: bool = True,
) -> Tensor:
    """DDPM L_simple (Ho et al. 2020, eq. 14) on the VP chain, for a score model ``model(x, t)``.

    i ~ U{0..N-1}; ``x_i = sqrt(abar_i) x0 + sqrt(1 - abar_i) z``;
    loss ``|| sqrt(1 - abar_i) s + z ||^2``
    (= ``|| z - eps_hat ||^2``); the model gets the t with m(t)^2 = abar_i.
    """
    if not isinstance(sde, VPSDE):
        raise TypeError(f"ddpm_loss needs a VPSDE (the DDPM chain), got {type(sde).__name__}")
    _check_choice("reduce", reduce, REDUCTIONS)
    if check_finite:
        _check_x0(x0)
    i = _discrete_index(sde, x0.shape[0], generator, x0.device)
    abar = sde.alphas_cumprod.to(x0.device)[i]  # float64
    t = _t_from_integrated_beta(sde, -torch.log(abar))
    return _discrete_dsm(
        model,
        x0,
        t,
        torch.sqrt(abar),
        torch.sqrt(1.0 - abar),
        y,
        generator,
        reduce,
        per_sample,
        check_finite,
    )


def ncsn_loss(
    model: Callable,
    sde: VESDE,
    x0: Tensor,
    *,
    reduce: str = "mean",
    y: Tensor | None = None,
    generator: torch.Generator | None = None,
    per_sample: bool = False,
    check_finite: bool = True,
) -> Tensor:
    """NCSN loss (Song & Ermon 2019, eq. 6, lambda = sigma^2) on the VE noise levels.

    i ~ U{0..N-1}; ``x = x0 + sigma_i z``; loss ``|| sigma_i s + z ||^2``; the model gets the t
    whose exact kernel std equals sigma_i.
    """
    if not isinstance(sde, VESDE):
        raise TypeError(
            f"ncsn_loss needs a VESDE (the SMLD noise levels), got {type(sde).__name__}"
        )
    _check_choice("reduce", reduce, REDUCTIONS)
    if check_finite:
        _check_x0(x0)
    i = _discrete_index(sde, x0.shape[0], generator, x0.device)
    sigma = sde.discrete_sigmas.to(x0.device)[i]  # float64
    L = math.log(sde.sigma_max / sde.sigma_min)
    t = torch.log1p((sigma / sde.sigma_min) ** 2) / (2.0 * L)
    return _discrete_dsm(
        model, x0, t, torch.ones_like(sigma), sigma, y, generator, reduce, per_sample, check_finite
    )
