"""Likelihood modes: no graph by default, resampled probes with an honest standard error, and
batch-independent solves (torchode) - all against the Gaussian-mixture oracle."""

import pytest
import torch

from scoresde.likelihood import bits_per_dim, log_likelihood
from scoresde.oracle import GaussianMixture
from scoresde.sde import VESDE, VPSDE


def _mixture(D, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(3, D, generator=g, dtype=torch.float64)
    stds = 0.2 + 0.4 * torch.rand(3, D, generator=g, dtype=torch.float64)
    return GaussianMixture([0.2, 0.3, 0.5], means, stds)


class _Scaled(torch.nn.Module):
    def __init__(self, gm, sde):
        super().__init__()
        self.gm, self.sde = gm, sde
        self.a = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))

    def forward(self, x, t):
        return self.a * self.gm.score_t(x, t, self.sde)


def test_default_call_builds_no_graph_and_grad_true_does():
    sde = VPSDE()
    gm = _mixture(2)
    model = _Scaled(gm, sde)
    x = gm.sample(3, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    kw = {"trace": "exact", "rtol": 1e-4, "atol": 1e-4, "eps": 1e-3}
    res = log_likelihood(sde, model, x, **kw)  # grad mode on, but nothing asked
    assert not res.logp.requires_grad and res.logp.grad_fn is None and not res.z.requires_grad
    bpd = bits_per_dim(sde, model, torch.tensor([[1, 2]]), levels=4, data_range=(0, 1), **kw)
    assert not bpd.bpd.requires_grad
    with_graph = log_likelihood(sde, model, x, grad=True, **kw)
    assert with_graph.logp.requires_grad
    assert torch.allclose(with_graph.logp.detach(), res.logp, rtol=1e-10)
    (g,) = torch.autograd.grad(with_graph.logp.sum(), model.a)
    assert torch.isfinite(g)


@pytest.mark.parametrize("sde_cls", [VPSDE, VESDE])
def test_resampled_trace_is_unbiased_with_an_honest_standard_error(sde_cls):
    sde = sde_cls()
    D = 6
    gm = _mixture(D, seed=3)
    x = gm.sample(48, generator=torch.Generator().manual_seed(1))
    ex = log_likelihood(sde, gm.score_fn(sde), x, trace="exact", rtol=1e-6, atol=1e-6)

    def estimate(trace):
        g = torch.Generator().manual_seed(2)
        return log_likelihood(
            sde, gm.score_fn(sde), x, trace=trace, probes=4, generator=g, rtol=1e-6, atol=1e-6
        )

    est = estimate("resampled")
    z = (est.logp - ex.logp) / est.stderr
    assert est.stderr.min() > 1e-4  # the estimate is really noisy ...
    assert (z.abs() < 2).float().mean() >= 0.85, z  # ... and its stderr covers the error
    assert 0.4 < (z**2).mean() < 2.0, z  # neither over- nor under-stated on average
    assert abs(z.mean()) < 4 / len(z) ** 0.5  # no bias beyond 4 standard errors of the mean
    # fresh probes beat one fixed probe set of the same size on the same points
    fixed = estimate("rademacher")
    assert (est.logp - ex.logp).abs().mean() < (fixed.logp - ex.logp).abs().mean()
    again = estimate("resampled")  # deterministic given the generator
    assert torch.equal(again.logp, est.logp)


def test_independent_solve_gives_the_same_value_in_any_batch():
    sde = VPSDE()
    gm = _mixture(3, seed=1)
    x = gm.sample(64, generator=torch.Generator().manual_seed(4))
    kw = {"trace": "exact", "independent": True}
    alone = log_likelihood(sde, gm.score_fn(sde), x[:1], **kw).logp
    seven = log_likelihood(sde, gm.score_fn(sde), x[:7], **kw).logp
    full = log_likelihood(sde, gm.score_fn(sde), x, **kw)
    assert torch.allclose(seven[0], alone[0], rtol=1e-6, atol=0)
    assert torch.allclose(full.logp[0], alone[0], rtol=1e-6, atol=0)
    assert torch.allclose(full.logp[:7], seven, rtol=1e-6, atol=0)
    exact = gm.log_prob_t(x, torch.tensor(1e-5), sde)
    assert ((full.logp - exact).abs() / 3).max() < 2e-2  # includes the prior mismatch at T
    # the shared-step solve does depend on the batch (this is what the option is for)
    shared = [log_likelihood(sde, gm.score_fn(sde), xx, trace="exact").logp[0] for xx in (x[:1], x)]
    assert shared[0] != shared[1]


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"trace": "resampled", "adjoint": True}, ValueError, "adjoint"),
        ({"independent": True, "adjoint": True}, ValueError, "independent"),
        ({"independent": True, "method": "rk4"}, ValueError, "method"),
        ({"grad": 1}, TypeError, "grad"),
        ({"independent": "yes"}, TypeError, "independent"),
        ({"trace": "hutch++"}, ValueError, "resampled"),
    ],
)
def test_mode_arguments_are_checked(kwargs, exc, match):
    sde = VPSDE()
    gm = _mixture(2)
    with pytest.raises(exc, match=match):
        log_likelihood(sde, gm.score_fn(sde), torch.zeros(2, 2, dtype=torch.float64), **kwargs)
