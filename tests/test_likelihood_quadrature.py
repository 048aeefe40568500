"""trace="quadrature": the divergence integral by a Clenshaw-Curtis rule in log std(t) at
exact-trace nodes, against the Gaussian-mixture oracle's exact log p_eps."""

import pytest
import torch

from scoresde.likelihood import log_likelihood
from scoresde.likelihood.quadrature import clenshaw_curtis
from scoresde.oracle import GaussianMixture
from scoresde.sde import VESDE, VPSDE, SubVPSDE

EPS = 1e-5


def _mixture(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(3, D, generator=g, dtype=torch.float64)
    stds = 0.2 + 0.4 * torch.rand(3, D, generator=g, dtype=torch.float64)
    return GaussianMixture([0.2, 0.3, 0.5], means, stds)


def _errors(sde, D, B, nodes, tol=1e-7):
    """|logp - log p_eps| per point, with the oracle's p_T in place of the prior (the ODE and
    quadrature error alone), and the reported stderr."""
    gm = _mixture(D)
    x = gm.sample(B, generator=torch.Generator().manual_seed(1))
    r = log_likelihood(
        sde, gm.score_fn(sde), x, trace="quadrature", nodes=nodes, rtol=tol, atol=tol, eps=EPS
    )
    p_T = gm.log_prob_t(r.z, torch.tensor(sde.T), sde)
    exact = gm.log_prob_t(x, torch.tensor(EPS), sde)
    assert torch.allclose(r.logp, r.prior_logp + r.delta_logp)
    return (r.delta_logp + p_T - exact).abs(), r.stderr, r


@pytest.mark.parametrize("n", [2, 4, 8, 9])
def test_clenshaw_curtis_integrates_polynomials_of_degree_n_exactly(n):
    c, w = clenshaw_curtis(n)
    assert c[0] == 1 and c[-1] == -1 and len(w) == n + 1
    for k in range(n + 1):
        exact = (1 - (-1) ** (k + 1)) / (k + 1)
        assert abs((w * c**k).sum().item() - exact) < 1e-13
    # one degree past the rule: not exact (the test can fail)
    k = n + 2 if n % 2 == 0 else n + 1
    assert abs((w * c**k).sum().item() - (1 - (-1) ** (k + 1)) / (k + 1)) > 1e-6


# Largest per-point error (nats) at 65 nodes, 2-D, rtol = 1e-7; measured 2.6e-5, 5.5e-4, 8.3e-3:
# the separated 2-D mixture's responsibilities switch sharply along some paths (VE: over the
# widest range of log std), which a fixed rule resolves more slowly.
MAX_ERR_65 = {VPSDE: 1e-4, SubVPSDE: 2e-3, VESDE: 3e-2}


@pytest.mark.parametrize("sde_cls", [VPSDE, SubVPSDE, VESDE])
def test_quadrature_per_point_accuracy_converges_with_nodes(sde_cls):
    sde = sde_cls()
    coarse, _, _ = _errors(sde, 2, 32, nodes=9)
    fine, se, r = _errors(sde, 2, 32, nodes=65)
    assert r.nfe > 65 and r.z.shape == (32, 2)
    assert fine.max() < MAX_ERR_65[sde_cls], fine.max()
    assert fine.mean() < coarse.mean() / 100  # spectral convergence, not a floor
    assert (fine <= 2 * se).all()


def test_quadrature_stderr_is_honest():
    err, se, _ = _errors(VPSDE(), 8, 64, nodes=17)
    assert (se > 0).all()
    assert (err <= 2 * se).double().mean() >= 0.9
    # and not vacuous: the reported error is within a factor ~50 of the measured one on average
    # (measured 38x with the split rule: its error fell ~5x, the nested half rule's did not)
    assert se.mean() < 50 * err.mean()


def test_quadrature_matches_exact_trace_solve():
    sde, gm = VPSDE(), _mixture(4)
    x = gm.sample(8, generator=torch.Generator().manual_seed(2))
    kw = {"rtol": 1e-7, "atol": 1e-7, "eps": EPS}
    q = log_likelihood(sde, gm.score_fn(sde), x, trace="quadrature", nodes=33, **kw)
    e = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", **kw)
    assert torch.allclose(q.z, e.z, atol=1e-5)
    assert ((q.logp - e.logp).abs() / 4).max() < 1e-3


def test_quadrature_bad_input():
    sde, gm = VPSDE(), _mixture(2)
    x = gm.sample(2, generator=torch.Generator().manual_seed(0))
    for nodes in (2, 16, 0, 3.0, True):
        with pytest.raises(ValueError, match="nodes"):
            log_likelihood(sde, gm.score_fn(sde), x, trace="quadrature", nodes=nodes)
    with pytest.raises(ValueError, match="quadrature"):
        log_likelihood(sde, gm.score_fn(sde), x, trace="quadrature", adjoint=True)
