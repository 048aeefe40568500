"""Variational bounds against the Gaussian-mixture oracle: the continuous-time bound with exact
scores (tight up to the prior mismatch), the DDPM bound's terms against Monte-Carlo KLs, and
both finite and stable over chain lengths."""

import math

import pytest
import torch

from scoresde import ElboResult, elbo
from scoresde.likelihood import bits_per_dim, ddpm_bound
from scoresde.likelihood.bounds import _gaussian_kl, chain_betas, discretized_gaussian_nll
from scoresde.oracle import GaussianMixture
from scoresde.sde import VESDE, VPSDE, SubVPSDE


def _mixture(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(3, D, generator=g, dtype=torch.float64)
    stds = 0.2 + 0.4 * torch.rand(3, D, generator=g, dtype=torch.float64)
    return GaussianMixture([0.2, 0.3, 0.5], means, stds)


@pytest.mark.parametrize("sde_cls", [VPSDE, SubVPSDE, VESDE])
def test_continuous_bound_with_exact_scores_is_above_the_nll_and_tight(sde_cls):
    sde = sde_cls()
    D = 2
    gm = _mixture(D)
    x = gm.sample(64, generator=torch.Generator().manual_seed(1))
    r = elbo(sde, gm.score_fn(sde), x, samples=128, generator=torch.Generator().manual_seed(2))
    assert isinstance(r, ElboResult) and r.elbo.shape == (64,) and r.stderr.shape == (64,)
    gap = -r.elbo - (-gm.log_prob(x))  # bound minus the exact NLL, per point
    se_mean = (r.stderr.pow(2).mean() / len(gap)).sqrt()
    # on average the bound is above the NLL (within 3 standard errors of the mean) ...
    assert gap.mean() > -3 * se_mean, (gap.mean(), se_mean)
    # ... and with exact scores it is tight: the stated gap is 0.05 nats/dim (prior mismatch
    # at T and the truncation at eps are both far below it) plus the Monte-Carlo error
    assert gap.mean() < 0.05 * D + 3 * se_mean, (gap.mean(), se_mean)
    # the per-point standard errors are honest: z-scores of the per-point gaps
    z = gap / r.stderr
    assert 0.3 < (z**2).mean() < 2.5, z
    assert torch.isfinite(r.prior).all() and (r.prior < 0).all()


def _discrete_mixture(levels=8):
    """Point masses (std << bin) on grid values: p_0 is a known discrete distribution."""
    k = torch.tensor([[1, 2], [5, 6], [3, 3]])
    means = 2 * k.double() / (levels - 1) - 1
    gm = GaussianMixture([0.2, 0.3, 0.5], means, 1e-3 * 2 / (levels - 1))
    x = gm.sample(32, generator=torch.Generator().manual_seed(0))
    x = ((x + 1) / 2 * (levels - 1)).round() / (levels - 1) * 2 - 1
    nll = -torch.log(gm.weights[torch.cdist(x, means).argmin(1)])
    return gm, x, nll


@pytest.mark.parametrize("N,chain", [(10, "exact"), (100, "sde"), (1000, "sde")])
def test_ddpm_bound_is_finite_stable_and_above_the_discrete_nll(N, chain):
    levels = 8
    gm, x, nll = _discrete_mixture(levels)
    sde = VPSDE(N=N)
    r = ddpm_bound(
        sde,
        gm.score_fn(sde),
        x,
        levels=levels,
        samples=128,
        chain=chain,
        generator=torch.Generator().manual_seed(3),
    )
    assert torch.isfinite(r.elbo).all() and torch.isfinite(r.stderr).all()
    gap = -r.elbo - nll
    se_mean = (r.stderr.pow(2).mean() / len(gap)).sqrt()
    assert gap.mean() > -3 * se_mean
    if N == 1000:  # a long chain with exact scores is nearly tight
        assert gap.mean() < 0.3 + 3 * se_mean, (gap.mean(), se_mean)


def test_ddpm_sde_chain_with_betas_above_one_is_refused():
    with pytest.raises(ValueError, match="chain='exact'"):
        chain_betas(VPSDE(N=10), "sde")
    b = chain_betas(VPSDE(N=10), "exact")
    assert (b > 0).all() and (b < 1).all()
    # for long chains the two schedules agree to first order
    b_sde, b_ex = chain_betas(VPSDE(N=1000), "sde"), chain_betas(VPSDE(N=1000), "exact")
    assert torch.allclose(b_sde, b_ex, rtol=0.05, atol=2e-5)


def test_gaussian_kl_matches_a_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    B, D, n = 3, 4, 200_000
    mu_q, mu_p = (
        torch.randn(B, D, generator=g, dtype=torch.float64),
        torch.randn(B, D, generator=g, dtype=torch.float64),
    )
    var_q = torch.tensor([0.3, 1.0, 0.05], dtype=torch.float64)
    var_p = torch.tensor([0.5, 0.8, 0.07], dtype=torch.float64)
    kl = _gaussian_kl(mu_q, var_q, mu_p, var_p)
    s = mu_q + var_q.sqrt()[:, None] * torch.randn(n, B, D, generator=g, dtype=torch.float64)
    log_q = torch.distributions.Normal(mu_q, var_q.sqrt()[:, None]).log_prob(s).sum(-1)
    log_p = torch.distributions.Normal(mu_p, var_p.sqrt()[:, None]).log_prob(s).sum(-1)
    diff = log_q - log_p
    mc, se = diff.mean(0), diff.std(0) / math.sqrt(n)
    assert ((kl - mc).abs() < 4 * se).all(), (kl, mc, se)


def test_discretized_decoder_matches_binned_gaussian_samples():
    levels, g = 8, torch.Generator().manual_seed(1)
    k = torch.tensor([[0, 3, 7, 4]])  # an outer bin at each end
    x0 = 2 * k.double() / (levels - 1) - 1
    mean = torch.tensor([[-0.9, -0.1, 0.8, 0.2]], dtype=torch.float64)
    std = torch.tensor([0.3], dtype=torch.float64)
    nll = discretized_gaussian_nll(x0, mean, std, levels, (-1, 1))
    n = 400_000
    s = mean + std * torch.randn(n, 4, generator=g, dtype=torch.float64)
    binned = ((s + 1) / 2 * (levels - 1)).round().clamp(0, levels - 1)  # outer bins open
    freq = (binned == k.double()).double().mean(0)
    mc = -torch.log(freq).sum()
    se = (((1 - freq) / (freq * n)).sum()).sqrt()
    assert abs(nll.item() - mc.item()) < 4 * se.item(), (nll, mc, se)
    # 8-bit bins of width 2/255 deep in the middle: the density times the width
    x = torch.tensor([[0.0]], dtype=torch.float64)
    small = discretized_gaussian_nll(
        x, x + 0.1, torch.tensor([0.5], dtype=torch.float64), 256, (-1, 1)
    )
    dens = torch.distributions.Normal(0.1, 0.5).log_prob(torch.tensor(0.0)) + math.log(2 / 255)
    assert small.item() == pytest.approx(-dens.item(), rel=1e-4)


def test_bits_per_dim_bound_modes_sit_above_the_ode_value():
    sde = VPSDE(beta_max=30.0)
    levels = 8
    gm, x, _ = _discrete_mixture(levels)
    gm = GaussianMixture(gm.weights, gm.means, 0.15)  # smooth enough for the dequantized ODE
    kw = {"levels": levels, "data_range": (-1, 1), "generator": torch.Generator().manual_seed(0)}
    x = x[:8]
    ode = bits_per_dim(
        sde, gm.score_fn(sde), x, trace="exact", repeats=4, dtype=torch.float64, **kw
    )
    cont = bits_per_dim(
        sde,
        gm.score_fn(sde),
        x,
        repeats=4,
        bound="continuous",
        bound_samples=64,
        dtype=torch.float64,
        **kw,
    )
    ddpm = bits_per_dim(sde, gm.score_fn(sde), x, bound="ddpm", bound_samples=64, **kw)
    for r in (cont, ddpm):
        assert torch.isfinite(r.per_sample).all() and r.point_stderr.shape == (8,)
    assert cont.bound == "continuous" and ddpm.bound == "ddpm" and ddpm.offset == 0.0
    # the continuous bound on the same dequantized draws is above the ODE value on average
    se = (cont.point_stderr.pow(2).mean() / 8).sqrt()
    assert cont.bpd > ode.bpd - 3 * se
    with pytest.raises(ValueError, match="bound must be"):
        bits_per_dim(sde, gm.score_fn(sde), x, bound="vlb", **kw)


@pytest.mark.parametrize(
    "fn,kwargs,match",
    [
        ("elbo", {"samples": 1}, "samples"),
        ("elbo", {"eps": 0.0}, "eps"),
        ("elbo", {"x": torch.tensor([[0.0, float("nan")]])}, "finite"),
        ("elbo", {"x": torch.zeros(3)}, "shape"),
        ("ddpm", {"variance": "tiny"}, "variance"),
        ("ddpm", {"chain": "euler"}, "chain"),
    ],
)
def test_bounds_reject_bad_input(fn, kwargs, match):
    sde = VPSDE()
    gm = _mixture(2)
    args = {"x": torch.zeros(2, 2, dtype=torch.float64)}
    args.update(kwargs)
    x = args.pop("x")
    with pytest.raises(ValueError, match=match):
        if fn == "elbo":
            elbo(sde, gm.score_fn(sde), x, **args)
        else:
            ddpm_bound(sde, gm.score_fn(sde), x, **args)
