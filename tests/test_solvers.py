"""scoresde.solvers: the one solver list and odeint, including SciPy's Dormand-Prince (rk45),
against closed-form solutions and the Gaussian-mixture oracle."""

import math

import pytest
import torch

from scoresde.likelihood import log_likelihood
from scoresde.likelihood.ode_likelihood import default_method
from scoresde.oracle import GaussianMixture
from scoresde.sampling import sample
from scoresde.sde import VPSDE
from scoresde.solvers import ADAPTIVE_SOLVERS, GRAPH_FREE_SOLVERS, odeint


def test_every_graph_free_solver_is_in_the_one_list():
    assert set(GRAPH_FREE_SOLVERS) <= set(ADAPTIVE_SOLVERS)


@pytest.mark.parametrize("method", ["dopri5", "rk45"])
@pytest.mark.parametrize("direction", [1, -1])
def test_odeint_solves_a_linear_ode_in_either_direction(method, direction):
    """dy/dt = -t y: y(t) = y(t0) exp(-(t^2 - t0^2) / 2), at every requested time."""
    y0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    t = torch.tensor([0.1, 0.4, 0.7, 1.0], dtype=torch.float64)
    t = t if direction > 0 else t.flip(0)
    ys = odeint(lambda s, y: -s * y, y0, t, method, rtol=1e-9, atol=1e-9)
    exact = y0 * torch.exp(-(t**2 - t[0] ** 2) / 2)[:, None, None]
    assert ys.shape == (4, 2, 2) and ys.dtype == torch.float64
    torch.testing.assert_close(ys, exact, rtol=1e-7, atol=1e-9)


def test_rk45_builds_no_graph_even_when_asked():
    y0 = torch.ones(3, requires_grad=True)
    ys = odeint(lambda s, y: -y, y0, torch.tensor([0.0, 1.0]), "rk45", rtol=1e-6, atol=1e-6)
    assert not ys.requires_grad
    assert math.isclose(float(ys[-1, 0]), math.exp(-1), rel_tol=1e-5)


def _mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(3, 4, generator=g, dtype=torch.float64)
    stds = 0.2 + 0.4 * torch.rand(3, 4, generator=g, dtype=torch.float64)
    return GaussianMixture([0.2, 0.3, 0.5], means, stds)


def test_rk45_sampler_ode_matches_dopri5():
    """The probability-flow map T -> eps from the same prior draws, by both solvers."""
    sde, gm = VPSDE(), _mixture()
    out = {
        solver: sample(
            sde, gm.score_fn(sde), (64, 4), method="ode", solver=solver, rtol=1e-8, atol=1e-8,
            generator=torch.Generator().manual_seed(3), dtype=torch.float64,
        ).x
        for solver in ("dopri5", "rk45")
    }  # fmt: skip
    torch.testing.assert_close(out["rk45"], out["dopri5"], rtol=0, atol=1e-5)


def test_method_none_runs_rk45_for_the_quadrature_traces_on_the_cpu_only():
    assert default_method("hutchpp", "cpu") == "rk45"
    assert default_method("quadrature", torch.device("cpu")) == "rk45"
    assert default_method("quadrature", "cpu", True) == "dopri5"  # a graph is asked for
    assert default_method("rademacher", "cpu") == "dopri5"
    assert default_method("hutchpp", "cuda") == "dopri5"


def test_rk45_likelihood_matches_dopri5_and_the_oracle():
    sde, gm = VPSDE(), _mixture()
    x = gm.sample(32, generator=torch.Generator().manual_seed(1))
    kw = {"trace": "quadrature", "nodes": 17, "rtol": 1e-8, "atol": 1e-8}
    a = log_likelihood(sde, gm.score_fn(sde), x, method="rk45", **kw)
    b = log_likelihood(sde, gm.score_fn(sde), x, method="dopri5", **kw)
    c = log_likelihood(sde, gm.score_fn(sde), x, **kw)  # method=None: rk45 here
    torch.testing.assert_close(a.logp, b.logp, rtol=0, atol=1e-5)
    assert torch.equal(a.logp, c.logp)
    assert bool(((a.logp - b.logp).abs() < a.stderr).all())  # far inside the rule's error
    # the augmented solve (exact trace inside it) against the oracle's log p_eps
    e = log_likelihood(sde, gm.score_fn(sde), x, method="rk45", trace="exact", rtol=1e-8, atol=1e-8)
    p_T = gm.log_prob_t(e.z, torch.tensor(sde.T), sde)
    exact = gm.log_prob_t(x, torch.tensor(1e-5), sde)
    assert float((e.delta_logp + p_T - exact).abs().max()) < 1e-5


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"grad": True}, "supports none of grad"),
        ({"trace": "resampled", "probes": 2}, "x columns alone"),
        ({"trace": "exact", "adjoint": True}, "supports none of grad, adjoint"),
    ],
)
def test_rk45_rejects_what_it_cannot_do(kwargs, match):
    sde, gm = VPSDE(), _mixture()
    x = gm.sample(4, generator=torch.Generator().manual_seed(1))
    kwargs = {"trace": "exact", **kwargs}
    with pytest.raises(ValueError, match=match):
        log_likelihood(sde, gm.score_fn(sde), x, method="rk45", **kwargs)
