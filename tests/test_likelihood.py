"""Probability-flow likelihoods and bits/dim against the Gaussian-mixture oracle's exact
densities."""

import math

import numpy as np
import pytest
import torch

from scoresde.likelihood import (
    bits_per_dim,
    bpd_offset,
    dequantize,
    log_likelihood,
    to_levels,
)
from scoresde.oracle import GaussianMixture
from scoresde.sde import VESDE, VPSDE, SubVPSDE

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def _mixture(D, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(3, D, generator=g, dtype=dtype)
    stds = 0.2 + 0.4 * torch.rand(3, D, generator=g, dtype=dtype)
    return GaussianMixture([0.2, 0.3, 0.5], means, stds)


@pytest.mark.parametrize("name,D", [("vp", 2), ("subvp", 2), ("ve", 2), ("vp", 4)])
def test_exact_trace_matches_oracle_log_p_eps(name, D):
    sde = SDES[name]()
    gm = _mixture(D)
    x = gm.sample(6, generator=torch.Generator().manual_seed(1))
    eps = 1e-5
    with torch.no_grad():
        res = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", rtol=1e-5, atol=1e-5, eps=eps)
    exact = gm.log_prob_t(x, torch.tensor(eps), sde)
    # The ODE part is exact up to solver error: with the exact p_T in place of the prior
    # log p_eps(x) = log p_T(z) + int div.
    p_T = gm.log_prob_t(res.z, torch.tensor(sde.T), sde)
    assert ((res.delta_logp + p_T - exact).abs() / D).max() < 1e-3
    # logp itself also carries the (tiny, known) prior mismatch log N(z; prior) - log p_T(z).
    mismatch = (res.prior_logp - p_T).abs()
    assert ((res.logp - exact).abs() - mismatch).max() / D < 1e-3
    assert torch.allclose(res.logp, res.prior_logp + res.delta_logp)
    assert res.stderr is None and res.nfe > 10 and res.z.shape == x.shape


def test_nfe_counts_score_calls_and_times_stay_in_eps_T():
    sde = VPSDE()
    gm = _mixture(2)
    sf = gm.score_fn(sde)
    times = []

    def score(x, t):
        times.append(t.clone())
        return sf(x, t)

    x = gm.sample(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        res = log_likelihood(
            sde, score, x, trace="rademacher", eps=1e-3, generator=torch.Generator().manual_seed(0)
        )
    assert res.nfe == len(times)
    t = torch.cat(times)
    assert t.min() >= 1e-3 - 1e-12 and t.max() <= sde.T + 1e-12


@pytest.mark.parametrize("trace,name", [("rademacher", "vp"), ("gaussian", "ve")])
def test_hutchinson_is_unbiased_within_its_standard_error(trace, name):
    sde = SDES[name]()
    D = 3
    gm = _mixture(D, seed=2)
    x = gm.sample(8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ex = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", rtol=1e-6, atol=1e-6)
        est = log_likelihood(
            sde,
            gm.score_fn(sde),
            x,
            trace=trace,
            probes=64,
            rtol=1e-6,
            atol=1e-6,
            generator=torch.Generator().manual_seed(4),
        )
    assert est.stderr is not None and (est.stderr > 0).all()
    z = (est.logp - ex.logp) / est.stderr
    # 8 independent z-scores: each within 4.5 sigma, and their mean square near 1
    # (chi^2_8 / 8 < 3.5)
    assert z.abs().max() < 4.5, z
    assert (z**2).mean() < 3.5, z
    # the estimator is not trivially exact: per-sample stderr is resolvable
    assert est.stderr.max() > 1e-3


def test_single_probe_is_deterministic_given_generator_and_float32_works():
    sde = VPSDE()
    gm = _mixture(2).to(torch.float32)
    x = gm.sample(5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():  # also works under inference mode
        a = log_likelihood(sde, gm.score_fn(sde), x, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        b = log_likelihood(sde, gm.score_fn(sde), x, generator=torch.Generator().manual_seed(7))
    assert a.logp.dtype == torch.float32
    assert torch.equal(a.logp, b.logp) and a.nfe == b.nfe


class _ScaledScore(torch.nn.Module):
    """s(x, t) = a * s_oracle(x, t) + W x: a model with parameters for gradient tests."""

    def __init__(self, gm, sde):
        super().__init__()
        self.gm, self.sde = gm, sde
        self.a = torch.nn.Parameter(torch.tensor(0.9, dtype=torch.float64))
        self.lin = torch.nn.Linear(2, 2, bias=False, dtype=torch.float64)
        torch.nn.init.normal_(self.lin.weight, std=0.1, generator=torch.Generator().manual_seed(0))

    def forward(self, x, t):
        return self.a * self.gm.score_t(x, t, self.sde) + self.lin(x)


@pytest.mark.parametrize("adjoint", [False, True])
def test_gradients_reach_the_score_model_parameters(adjoint):
    sde = VPSDE()
    gm = _mixture(2)
    model = _ScaledScore(gm, sde)
    x = gm.sample(4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    kw = {"trace": "exact", "rtol": 1e-7, "atol": 1e-7, "eps": 1e-3}
    res = log_likelihood(sde, model, x, adjoint=adjoint, grad=True, **kw)
    res.logp.sum().backward()
    grad_a = model.a.grad.item()
    assert model.lin.weight.grad is not None and model.lin.weight.grad.abs().sum() > 0
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # central finite difference in the parameter a
    h = 1e-4
    with torch.no_grad():
        vals = []
        for s in (h, -h):
            model.a += s
            vals.append(log_likelihood(sde, model, x.detach(), **kw).logp.sum().item())
            model.a -= s
    fd = (vals[0] - vals[1]) / (2 * h)
    assert grad_a == pytest.approx(fd, rel=2e-3, abs=1e-3)


# ------------------------------------------------------------------------------ bits/dim
def _grid_mixture(data_range):
    """A mixture on the data cube with known density, in the model coordinates of data_range."""
    lo, hi = data_range
    mu_y = torch.tensor([[0.3, 0.6], [0.7, 0.25]], dtype=torch.float64)
    s_y = torch.tensor([[0.2, 0.3], [0.25, 0.2]], dtype=torch.float64)
    return GaussianMixture([0.4, 0.6], lo + (hi - lo) * mu_y, (hi - lo) * s_y)


def _exact_bound_bpd(gm, sde, k, levels, data_range, eps, n_quad=24):
    """-(E_u log p_eps(x(u)) + D log(hi-lo) - D log L) / (D ln 2) by Gauss-Legendre quadrature."""
    lo, hi = data_range
    nodes, w = np.polynomial.legendre.leggauss(n_quad)
    u = torch.tensor((nodes + 1) / 2, dtype=torch.float64)
    w = torch.tensor(w / 2, dtype=torch.float64)
    uu = torch.stack(torch.meshgrid(u, u, indexing="ij"), -1).reshape(-1, 2)
    ww = (w[:, None] * w[None, :]).reshape(-1)
    out = []
    for kk in k:
        x = lo + (hi - lo) * (kk.double() + uu) / levels
        e_logp = (ww * gm.log_prob_t(x, torch.tensor(eps), sde)).sum()
        D = 2
        out.append(-(e_logp + D * math.log(hi - lo) - D * math.log(levels)) / (D * math.log(2)))
    return torch.stack(out)


def test_bits_per_dim_of_a_known_discrete_distribution():
    # beta_max = 30 makes the prior mismatch negligible (m(T) = 7e-4), so the ODE gives log p_eps.
    sde = VPSDE(beta_max=30.0)
    levels, data_range, eps = 4, (0.0, 1.0), 1e-5
    gm = _grid_mixture(data_range)
    k = torch.tensor([[0, 1], [2, 3], [3, 0], [1, 2]])
    R = 32
    with torch.no_grad():
        res = bits_per_dim(
            sde,
            gm.score_fn(sde),
            k,
            levels=levels,
            data_range=data_range,
            repeats=R,
            trace="exact",
            eps=eps,
            generator=torch.Generator().manual_seed(0),
            dtype=torch.float64,
        )
    exact = _exact_bound_bpd(gm, sde, k, levels, data_range, eps)
    se = res.per_draw.std(dim=0) / math.sqrt(R)
    assert ((res.per_sample - exact).abs() < 4 * se + 2e-3).all(), (res.per_sample, exact, se)
    assert res.per_draw.shape == (R, 4) and res.offset == 2.0
    assert res.bpd == pytest.approx(res.per_sample.mean().item())
    assert res.stderr == pytest.approx((res.per_sample.std() / 2).item())


def test_bits_per_dim_does_not_depend_on_the_model_scaling():
    # The same discrete model expressed in [0, 1] and in [-1, 1] coordinates has the same bits/dim:
    # this pins the log-determinant offset log2(L) - log2(hi - lo) (the reference's "+7").
    sde = VPSDE(beta_max=30.0)
    k = torch.tensor([[0, 5], [7, 3], [2, 2]])
    bpds = []
    for data_range in ((0.0, 1.0), (-1.0, 1.0)):
        gm = _grid_mixture(data_range)
        with torch.no_grad():
            r = bits_per_dim(
                sde,
                gm.score_fn(sde),
                k,
                levels=8,
                data_range=data_range,
                repeats=2,
                trace="exact",
                generator=torch.Generator().manual_seed(5),
                dtype=torch.float64,
            )
        bpds.append(r.per_draw)
    assert torch.allclose(bpds[0], bpds[1], atol=2e-3)
    assert bpd_offset(256, (-1, 1)) == 7.0 and bpd_offset(256, (0, 1)) == 8.0


def test_float_grid_input_equals_integer_input_and_dequantization_stays_in_bins():
    k = torch.tensor([[0, 16, 8, 3]])
    x = 2.0 * k.float() / 16 - 1.0  # the data loaders' convention for 17 levels in [-1, 1]
    assert torch.equal(to_levels(x, 17, (-1, 1)), k)
    xd = dequantize(k.repeat(500, 1), 17, (-1, 1), generator=torch.Generator().manual_seed(0))
    lo_edge = -1 + 2 * k.float() / 17
    assert ((xd >= lo_edge) & (xd < lo_edge + 2 / 17)).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"x": torch.tensor([[0.0, float("nan")]])}, "finite"),
        ({"eps": 0.0}, "eps"),
        ({"eps": 1.0}, "eps"),
        ({"eps": -1e-3}, "eps"),
        ({"trace": "hutch"}, "trace"),
        ({"method": "rk23"}, "method"),
        ({"probes": 0}, "probes"),
        ({"rtol": 0.0}, "rtol"),
        ({"x": torch.zeros(2)}, "shape"),
    ],
)
def test_log_likelihood_rejects_bad_input(kwargs, match):
    sde = VPSDE()
    gm = _mixture(2)
    args = {"x": torch.zeros(2, 2, dtype=torch.float64)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        log_likelihood(sde, gm.score_fn(sde), **args)


@pytest.mark.parametrize(
    "x,kwargs,match",
    [
        (torch.tensor([[0, 256]]), {}, "levels - 1"),
        (torch.tensor([[-1, 3]]), {}, "levels - 1"),
        (torch.tensor([[0.0, 1.5]]), {}, "data_range"),
        (torch.tensor([[0.0, 0.001]]), {}, "grid"),
        (torch.tensor([[0.0, float("inf")]]), {}, "finite"),
        (torch.tensor([[0, 1]]), {"levels": 1}, "levels"),
        (torch.tensor([[0, 1]]), {"repeats": 0}, "repeats"),
        (torch.tensor([[0, 1]]), {"data_range": (1, -1)}, "data_range"),
    ],
)
def test_bits_per_dim_rejects_bad_input(x, kwargs, match):
    sde = VPSDE()
    gm = _mixture(2)
    with pytest.raises(ValueError, match=match):
        bits_per_dim(sde, gm.score_fn(sde), x, **kwargs)
