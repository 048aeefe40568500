"""Variational bounds on the log-likelihood, per point, with a standard error.

**Continuous time** (Song, Durkan, Murray & Ermon 2021, thm. 1; Huang, Lim & Courville 2021).
For a linear SDE with kernel ``p_0t(x_t | x) = N(m(t) x, std(t)^2 I)`` and a score model s,

    -log p(x) <= -E[log pi(x_T)]
                 + 1/2 int_eps^T E[ g^2 ||s(x_t, t) + z / std||^2 - g^2 D / std^2 - 2 div f ] dt,

x_t = m x + std z. With s the true score of p_t and pi = p_T the bound is tight (the model's
reverse path measure equals the forward one), so on the oracle the gap is the prior mismatch plus
the truncation at eps. Here (reusing :mod:`scoresde.losses`):

- the first integrand is the likelihood-weighted DSM loss, estimated with t importance-sampled
  from q(t) ~ g^2 / std^2 (``dsm_loss(weighting="likelihood", importance_sampling=True)``, whose
  expectation is ``1 / (T - eps)`` times the integral);
- ``int g^2 D / std^2 dt = D Z`` (``importance_normalizer``) and, for f(x, t) = (d log m / dt) x,
  ``int div f dt = D (log m(T) - log m(eps))`` are exact;
- ``-E[log pi(x_T)] = D/2 log(2 pi s^2) + (m_T^2 ||x||^2 + D std_T^2) / (2 s^2)`` is exact.

Only the DSM term is random: ``samples`` draws of (t, z) per point give the mean and its standard
error.

**Discrete VP chain** (Ho, Jain & Abbeel 2020, "DDPM", eq. 5 and sec. 3.3):
``L_vlb = L_0 + sum_{t=2}^N L_{t-1} + L_T`` with

    L_T     = KL(q(x_N | x_0) || N(0, I)),
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),  x_t ~ q(x_t | x_0),
    L_0     = -log p(x_0 | x_1),  the discretized Gaussian decoder: each coordinate's probability
              is the N(mu, sigma_1^2) mass of its bin [x - w/2, x + w/2] (w = (hi - lo) / (L - 1),
              2/255 for 8-bit data on [-1, 1]), the outer bins open to -inf / +inf.

q(x_{t-1} | x_t, x_0) = N(mu~, beta~_t I) with mu~ = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0
+ sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t and beta~_t = (1 - abar_{t-1}) / (1 - abar_t)
beta_t; the model mean is mu = (x_t - beta_t / sqrt(1 - abar_t) eps_hat) / sqrt(alpha_t) with
eps_hat = -sqrt(1 - abar_t) s(x_t, t') at the continuous t' with m(t')^2 = abar_t (as in
:func:`scoresde.losses.ddpm_loss`). Model variance ``"small"`` sigma_t^2 = beta~_t or ``"large"``
beta_t, with sigma_1^2 = beta~_2 in both (the seed's clipping: beta~_1 = 0). L_T is exact; the
sum over t (t = 1 is L_0) is estimated from ``samples`` draws of t, stratified: the index range
is cut into H = min(samples // 2, N) strata with samples // H draws in each (the stratified
estimator and its variance, Cochran 1977, ch. 5).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde.losses import dsm_loss, importance_normalizer
from scoresde.sde import SDE, VPSDE, batch_view

__all__ = ["BOUNDS", "DDPM_CHAINS", "DDPM_VARIANCES", "ElboResult", "ddpm_bound", "elbo"]

BOUNDS = ("continuous", "ddpm")
DDPM_VARIANCES = ("small", "large")
DDPM_CHAINS = ("sde", "exact")


@dataclass
class ElboResult:
    """A per-point lower bound on log p(x), in nats ([B] tensors).

    Attributes:
        elbo: the bound's estimate (log p(x) >= elbo in expectation).
        stderr: its Monte-Carlo standard error.
        prior: the prior term (-E[log pi(x_T)] for the continuous bound, L_T for DDPM), exact.
        samples: draws per point behind the estimate.
    """

    elbo: Tensor
    stderr: Tensor
    prior: Tensor
    samples: int


def _check(x: Tensor, samples: int) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point Tensor [B, *dims], got {type(x).__name__}")
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape [B, *dims] with B >= 1, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite (it contains NaN or inf)")
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples must be an integer >= 2 (for a standard error), got {samples!r}")


def _mean_and_stderr(draws: Tensor) -> tuple[Tensor, Tensor]:
    """draws [S, B] -> mean [B], standard error [B]."""
    return draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])


def elbo(
    sde: SDE,
    score_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    samples: int = 64,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> ElboResult:
    """The continuous-time variational bound on log p(x) (module docstring), per point.

    Args:
        sde: VPSDE, SubVPSDE or VESDE (the importance sampler's closed forms).
        score_fn: ``score_fn(x, t)``.
        x: data [B, *dims] in model range.
        samples: (t, z) draws per point (>= 2).
        eps: smallest time.
        generator: source of t and z.
    """
    _check(x, samples)
    if not (isinstance(eps, (int, float)) and 0 < eps < sde.T):
        raise ValueError(f"eps must lie in (0, T) = (0, {sde.T}), got {eps!r}")
    B, D = x.shape[0], x[0].numel()
    T = float(sde.T)
    with torch.no_grad():
        rep = x.repeat(samples, *([1] * (x.dim() - 1)))  # [S * B, *dims], draw-major
        dsm = dsm_loss(
            score_fn,
            sde,
            rep,
            weighting="likelihood",
            importance_sampling=True,
            eps=eps,
            reduce="sum",
            generator=generator,
            per_sample=True,
        ).reshape(samples, B)
        diffusion, stderr = _mean_and_stderr(0.5 * (T - eps) * dsm)
        t_ends = torch.tensor([eps, T], dtype=torch.float64)
        m, std = sde.marginal_coeffs(t_ends)
        exact = -0.5 * D * importance_normalizer(sde, eps) - D * float(
            torch.log(m[1]) - torch.log(m[0])
        )
        s2 = sde.prior_std() ** 2
        sq = x.reshape(B, -1).double().pow(2).sum(1)
        prior = 0.5 * D * math.log(2 * math.pi * s2) + (m[1] ** 2 * sq + D * std[1] ** 2) / (2 * s2)
        nll = prior.to(x.dtype) + diffusion + exact
    return ElboResult(elbo=-nll, stderr=stderr, prior=-prior.to(x.dtype), samples=samples)


# ------------------------------------------------------------------------------ discrete DDPM
def _chain_term(score_fn, x0, z, i, sc, levels, data_range) -> Tensor:
    """L_{t-1} (i >= 1) or L_0 (i = 0) at DDPM step t = i + 1, one x_t draw per row: [B] nats."""
    dtype = x0.dtype
    v = {k: val[i] for k, val in sc.items()}

    def col(c: Tensor) -> Tensor:
        return batch_view(c.to(dtype), x0)

    xt = col(v["abar"].sqrt()) * x0 + col((1 - v["abar"]).sqrt()) * z
    eps_hat = -col((1 - v["abar"]).sqrt()) * score_fn(xt, v["t"].to(dtype))
    mu = (xt - col(v["beta"] / (1 - v["abar"]).sqrt()) * eps_hat) / col(v["alpha"].sqrt())
    c0 = v["abar_prev"].sqrt() * v["beta"] / (1 - v["abar"])
    ct = v["alpha"].sqrt() * (1 - v["abar_prev"]) / (1 - v["abar"])
    mu_post = col(c0) * x0 + col(ct) * xt
    kl = _gaussian_kl(  # at i = 0 (post_var = 0) replaced by the decoder below
        mu_post.double(), v["post_var"].clamp_min(1e-300), mu.double(), v["model_var"]
    )
    dec = discretized_gaussian_nll(
        x0.double(), mu.double(), v["model_var"].sqrt(), levels, data_range
    )
    return torch.where(i == 0, dec, kl)


def _gaussian_kl(mu_q: Tensor, var_q: Tensor, mu_p: Tensor, var_p: Tensor) -> Tensor:
    """KL(N(mu_q, var_q I) || N(mu_p, var_p I)) summed over dims; variances [B] -> [B]."""
    D = mu_q[0].numel()
    sq = (mu_q - mu_p).reshape(mu_q.shape[0], -1).pow(2).sum(1)
    r = var_q / var_p
    return 0.5 * (D * (r - 1 - torch.log(r)) + sq / var_p)


def discretized_gaussian_nll(
    x0: Tensor, mean: Tensor, std: Tensor, levels: int, data_range: Sequence[float]
) -> Tensor:
    """-log of the N(mean, std^2) mass of each coordinate's bin, summed over dims: [B] nats.

    Bins of width w = (hi - lo) / (levels - 1) centred on the grid; the lowest bin extends to -inf
    and the highest to +inf (DDPM's L_0 decoder)."""
    lo, hi = (float(v) for v in data_range)
    half = 0.5 * (hi - lo) / (levels - 1)
    normal = torch.distributions.Normal(
        torch.zeros((), dtype=x0.dtype), torch.ones((), dtype=x0.dtype)
    )
    s = batch_view(std, x0)
    upper = (x0 + half - mean) / s
    lower = (x0 - half - mean) / s
    log_cdf_up = torch.log(normal.cdf(upper).clamp_min(1e-300))
    log_sf_low = torch.log((1 - normal.cdf(lower)).clamp_min(1e-300))
    mid = torch.log((normal.cdf(upper) - normal.cdf(lower)).clamp_min(1e-300))
    logp = torch.where(x0 <= lo + half, log_cdf_up, torch.where(x0 >= hi - half, log_sf_low, mid))
    return -logp.reshape(x0.shape[0], -1).sum(1)


def chain_betas(sde: VPSDE, chain: str = "sde") -> Tensor:
    """beta_1..beta_N (float64) of the discrete chain: ``"sde"`` the SDE's own DDPM schedule
    ``beta(t_i) / N`` (what :func:`scoresde.losses.ddpm_loss` trains on; needs every beta < 1),
    or ``"exact"`` ``1 - m(i/N)^2 / m((i-1)/N)^2``, the chain whose marginals are the SDE's at
    t = i/N (valid for any N)."""
    if chain not in DDPM_CHAINS:
        raise ValueError(f"chain must be one of {DDPM_CHAINS}, got {chain!r}")
    if chain == "exact":
        t = torch.linspace(0.0, sde.T, sde.N + 1, dtype=torch.float64)
        return -torch.expm1(2.0 * (sde.log_mean_coeff(t[1:]) - sde.log_mean_coeff(t[:-1])))
    beta = sde.discrete_betas
    if not (beta < 1).all():
        raise ValueError(
            f"the SDE's DDPM schedule beta(t)/N has betas up to {beta.max().item():.3g} >= 1 at "
            f"N = {sde.N} (not a Markov chain); use chain='exact' or a larger N"
        )
    return beta


def ddpm_terms(sde: VPSDE, variance: str = "small", chain: str = "sde") -> dict[str, Tensor]:
    """The chain's float64 schedules, 0-based (index i is DDPM's t = i + 1)."""
    beta = chain_betas(sde, chain)
    alpha = 1 - beta
    abar = torch.cumprod(alpha, 0)
    abar_prev = torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])
    post_var = (1 - abar_prev) / (1 - abar) * beta
    clip = post_var[1] if sde.N > 1 else beta[0]
    model_var = post_var.clone() if variance == "small" else beta.clone()
    model_var[0] = clip
    t_cont = sde.t_from_log_mean_coeff(0.5 * torch.log(abar))
    return {
        "beta": beta,
        "alpha": alpha,
        "abar": abar,
        "abar_prev": abar_prev,
        "post_var": post_var,
        "model_var": model_var,
        "t": t_cont,
    }


def ddpm_bound(
    sde: VPSDE,
    score_fn: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    levels: int = 256,
    data_range: Sequence[float] = (-1.0, 1.0),
    samples: int = 64,
    variance: str = "small",
    generator: torch.Generator | None = None,
    chain: str = "sde",
) -> ElboResult:
    """DDPM's L_vlb per point (module docstring), as an ElboResult (``elbo = -L_vlb``, nats).

    ``x0`` [B, *dims] are floats on the data grid ``lo + (hi - lo) k / (levels - 1)``; ``chain``
    picks the betas (:func:`chain_betas`), ``variance`` the model variance.
    """
    if not isinstance(sde, VPSDE):
        raise TypeError(f"the DDPM bound needs a VPSDE (the DDPM chain), got {type(sde).__name__}")
    if variance not in DDPM_VARIANCES:
        raise ValueError(f"variance must be one of {DDPM_VARIANCES}, got {variance!r}")
    _check(x0, samples)
    B, dtype, dev = x0.shape[0], x0.dtype, x0.device
    sc = {k: v.to(device=dev) for k, v in ddpm_terms(sde, variance, chain).items()}
    N = sde.N
    with torch.no_grad():
        abar_N = sc["abar"][-1]
        prior = _gaussian_kl(
            abar_N.sqrt() * x0.double(),
            (1 - abar_N).expand(B),
            torch.zeros_like(x0.double()),
            torch.ones(B, dtype=torch.float64, device=dev),
        )
        # stratified over t: H strata of the index range, r draws in each (r >= 2 for a variance)
        H = min(samples // 2, N)
        r = samples // H
        edges = torch.round(torch.linspace(0, N, H + 1, dtype=torch.float64)).long().to(dev)
        size = (edges[1:] - edges[:-1]).to(torch.float64)  # n_h >= 1
        rounds = []
        for _ in range(r):
            u = torch.rand(H, B, generator=generator, dtype=torch.float64, device=dev)
            i = (edges[:-1, None] + (u * size[:, None]).long()).reshape(
                -1
            )  # [H * B], stratum-major
            xr = x0.repeat(H, *([1] * (x0.dim() - 1)))
            z = torch.randn(xr.shape, generator=generator, dtype=dtype, device=dev)
            rounds.append(_chain_term(score_fn, xr, z, i, sc, levels, data_range).reshape(H, B))
        per = torch.stack(rounds)  # [r, H, B]
        total = (size[:, None] * per.mean(0)).sum(0)
        var = (size[:, None] ** 2 * per.var(0) / r).sum(0)
        nll = prior + total
        stderr = var.sqrt()
    return ElboResult(
        elbo=-nll.to(dtype), stderr=stderr.to(dtype), prior=-prior.to(dtype), samples=samples
    )
