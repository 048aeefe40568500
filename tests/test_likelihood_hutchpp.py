"""trace="hutchpp": randomized traces (Rademacher or a sketched control variate per node,
Neyman-allocated probes) at the Clenshaw-Curtis nodes, against exact traces and the
Gaussian-mixture oracle."""

import math

import pytest
import torch

from scoresde.likelihood import TRACE_ESTIMATORS, bits_per_dim, log_likelihood
from scoresde.likelihood.hutchpp import _Node, hutchpp_node_traces
from scoresde.oracle import GaussianMixture
from scoresde.sde import VPSDE

EPS = 1e-5


def _mixture(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(4, D, generator=g, dtype=torch.float64) / math.sqrt(D / 2)
    stds = 0.15 + 0.3 * torch.rand(4, D, generator=g, dtype=torch.float64)
    return GaussianMixture(torch.ones(4), means, stds)


def _linear_graphs(A: torch.Tensor, B: int):
    x = torch.randn(B, A.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_(True)
    return [(x @ A.T, x)]


@pytest.mark.parametrize("kind", ["diagonal", "diagonal_plus_low_rank", "dense"])
def test_node_traces_are_unbiased_with_honest_variance(kind):
    """One linear node, tr A known: the mean over 200 independent estimates is within 4 standard
    errors of tr A, and the reported variance matches the spread of the estimates (factor 2)."""
    g = torch.Generator().manual_seed(1)
    D = 24
    A = torch.diag(torch.rand(D, generator=g, dtype=torch.float64) * 10 - 8)
    if kind != "diagonal":
        U = torch.randn(D, 2, generator=g, dtype=torch.float64)
        A = A + 3 * U @ U.T
    if kind == "dense":
        A = A + torch.randn(D, D, generator=g, dtype=torch.float64)
    graphs = _linear_graphs(A, 200)
    est, var = hutchpp_node_traces(
        graphs.__getitem__, torch.ones(1), probes=6, generator=torch.Generator().manual_seed(2)
    )
    err = est[0] - torch.trace(A)
    if kind == "diagonal":  # Rademacher probes are exact on a diagonal matrix
        assert err.abs().max() < 1e-9
        return
    assert err.mean().abs() < 4 * err.std() / math.sqrt(200)
    ratio = var[0].mean() / err.pow(2).mean()
    assert 0.5 < ratio < 2, ratio


@pytest.mark.parametrize("kind", ["rademacher", "sketched"])
def test_each_estimator_is_unbiased_and_the_sketched_one_beats_rademacher(kind):
    """Diagonal + rank-2 node: each estimator's mean over 4000 samples is within 4 standard
    errors of tr A, and the sketched control variate has far less variance than Rademacher."""
    g = torch.Generator().manual_seed(3)
    D, B = 24, 8
    U = torch.randn(D, 2, generator=g, dtype=torch.float64)
    A = torch.diag(torch.rand(D, generator=g, dtype=torch.float64) * 2 - 8) + 3 * U @ U.T
    out, x = _linear_graphs(A, B)[0]
    node = _Node(out, x, torch.Generator().manual_seed(4))
    node.pilot_sketched(out, x)
    s = node._draw(kind, out, x, 4000)
    err = s.mean(0) - torch.trace(A)
    assert (err.abs() < 4 * s.std(0) / math.sqrt(4000)).all(), err
    rad_var = node._draw("rademacher", out, x, 400).var(0).mean()
    if kind != "rademacher":
        assert s.var(0).mean() < 0.2 * rad_var, (s.var(0).mean(), rad_var)


def test_sketched_estimator_ignores_the_diagonal():
    """Rademacher probes are exact on a diagonal and the sketch is of A minus its estimated
    diagonal, so with the same probes the samples of A + diag(c) are those of A plus sum(c)
    (plain Hutch++ on projected probes lacks this: its variance grows with the spread of c)."""
    g = torch.Generator().manual_seed(5)
    D, B = 24, 8
    U = torch.randn(D, 3, generator=g, dtype=torch.float64)
    A = U @ U.T
    c = torch.rand(D, generator=g, dtype=torch.float64) * 40 - 20
    draws = []
    for M in (A, A + torch.diag(c)):
        out, x = _linear_graphs(M, B)[0]
        node = _Node(out, x, torch.Generator().manual_seed(6))
        node.pilot_sketched(out, x)
        draws.append(node._draw("sketched", out, x, 50))
    torch.testing.assert_close(draws[1], draws[0] + c.sum(), rtol=0, atol=1e-8)


def _errors(D, B, nodes, probes, seed=2):
    """|logp - log p_eps| per point with the oracle's p_T in place of the prior, and stderr."""
    sde, gm = VPSDE(), _mixture(D)
    x = gm.sample(B, generator=torch.Generator().manual_seed(1))
    r = log_likelihood(
        sde, gm.score_fn(sde), x, trace="hutchpp", nodes=nodes, probes=probes,
        generator=torch.Generator().manual_seed(seed), eps=EPS,
    )  # fmt: skip
    p_T = gm.log_prob_t(r.z, torch.tensor(sde.T), sde)
    exact = gm.log_prob_t(x, torch.tensor(EPS), sde)
    return (r.delta_logp + p_T - exact).abs(), r.stderr, r


def test_hutchpp_per_point_error_and_honest_stderr_16d():
    # 16-D mixture, 256 points, 33 nodes, 100 probes: measured 1.5e-3 nats/dim, 0.99 within 2 sd;
    # Rademacher probes in the solve ("rademacher", 1 probe) give ~1e-2 here.
    err, se, r = _errors(16, 256, nodes=33, probes=100)
    assert err.mean() / 16 < 3e-3, err.mean() / 16
    assert (err <= 2 * se).double().mean() >= 0.9
    assert se.mean() < 10 * err.mean()  # honest, not vacuous
    assert torch.allclose(r.logp, r.prior_logp + r.delta_logp)


def test_hutchpp_more_probes_lower_error():
    few, _, _ = _errors(16, 256, nodes=33, probes=1)
    many, _, _ = _errors(16, 256, nodes=33, probes=400)
    assert many.mean() < 0.7 * few.mean()


def test_hutchpp_bad_input_names_the_argument():
    sde, gm = VPSDE(), _mixture(4)
    x = gm.sample(4, generator=torch.Generator().manual_seed(0))
    assert "hutchpp" in TRACE_ESTIMATORS
    for probes in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="probes must be None or an integer >= 1"):
            log_likelihood(sde, gm.score_fn(sde), x, trace="hutchpp", probes=probes)
    with pytest.raises(ValueError, match="nodes must be an odd integer >= 3"):
        log_likelihood(sde, gm.score_fn(sde), x, trace="hutchpp", nodes=16)
    for kw in ({"grad": True}, {"adjoint": True}, {"independent": True}):
        with pytest.raises(ValueError, match="hutchpp"):
            log_likelihood(sde, gm.score_fn(sde), x, trace="hutchpp", **kw)
    with pytest.raises(ValueError, match="hutchpp"):  # the allowed values are listed
        log_likelihood(sde, gm.score_fn(sde), x, trace="hutch++")


def test_bits_per_dim_accepts_hutchpp():
    sde, gm = VPSDE(), _mixture(4)
    k = torch.randint(0, 8, (6, 4), generator=torch.Generator().manual_seed(0))
    r = bits_per_dim(
        sde, gm.score_fn(sde), k, levels=8, data_range=(-1, 1), trace="hutchpp", nodes=9,
        probes=20, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert torch.isfinite(r.bpd).all() and r.stderr is not None


@pytest.mark.parametrize("trace", ["quadrature", "hutchpp"])
def test_nodes_default_is_the_traces_own(trace):
    from scoresde.likelihood.quadrature import DEFAULT_NODES

    sde, gm = VPSDE(), _mixture(4)
    x = gm.sample(8, generator=torch.Generator().manual_seed(0))

    def run(**kw):
        gen = torch.Generator().manual_seed(5)
        return log_likelihood(sde, gm.score_fn(sde), x, trace=trace, probes=8, generator=gen, **kw)

    default, explicit = run(), run(nodes=DEFAULT_NODES[trace])
    assert torch.equal(default.logp, explicit.logp)
    assert not torch.equal(default.logp, run(nodes=DEFAULT_NODES[trace] + 2).logp)


@pytest.mark.parametrize("trace", ["quadrature", "hutchpp"])
def test_a_rule_too_coarse_for_the_score_warns(trace):
    """A divergence that oscillates in t (as trained networks' do) is beyond 9 nodes: the nested
    rule's estimate says so and a RuntimeWarning names nodes; a smooth one raises nothing."""
    import warnings

    sde = VPSDE()
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def wiggly(xx, t):
        return -xx * (1 + 0.8 * torch.sin(300 * t))[:, None]

    def smooth(xx, t):
        return -xx

    kw = {"trace": trace, "nodes": 9, "eps": EPS, "generator": torch.Generator().manual_seed(0)}
    with pytest.warns(RuntimeWarning, match="nodes=9"):
        log_likelihood(sde, wiggly, x, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        log_likelihood(sde, smooth, x, **kw)
