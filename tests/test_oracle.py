"""Gaussian-mixture oracle: exact scores, the Fokker-Planck equation, sampling moments."""

import math

import pytest
import torch

from scoresde.oracle import GaussianMixture
from scoresde.sde import VESDE, VPSDE, SubVPSDE

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def _mixture(event_shape=(3,), labels=None):
    g = torch.Generator().manual_seed(1)
    K = 3
    D = math.prod(event_shape)
    means = (2 * torch.randn(K, D, generator=g, dtype=torch.float64)).reshape(K, *event_shape)
    stds = (0.3 + torch.rand(K, D, generator=g, dtype=torch.float64)).reshape(K, *event_shape)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), means, stds, labels=labels)


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("event_shape", [(3,), (1, 2, 2)])
def test_score_equals_autograd_of_log_prob_t(name, event_shape):
    sde = SDES[name]()
    gmm = _mixture(event_shape)
    g = torch.Generator().manual_seed(2)
    x = 2 * torch.randn(6, *event_shape, generator=g, dtype=torch.float64)
    t = torch.tensor([1e-4, 0.01, 0.1, 0.4, 0.7, 1.0], dtype=torch.float64)
    x.requires_grad_(True)
    (grad,) = torch.autograd.grad(gmm.log_prob_t(x, t, sde).sum(), x)
    score = gmm.score_t(x.detach(), t, sde)
    assert score.shape == x.shape
    torch.testing.assert_close(score, grad, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(gmm.score_fn(sde)(x.detach(), t), score)


@pytest.mark.parametrize("name", list(SDES))
def test_log_prob_t_solves_the_fokker_planck_equation(name):
    """d/dt log p = -div f - f . grad log p + g^2 / 2 (lap log p + |grad log p|^2).

    This is dp/dt = -div(f p) + g^2/2 lap p divided by p. The left side is a central finite
    difference in t (h = 1e-5, error ~1e-9); the right side uses exact autograd derivatives.
    """
    sde = SDES[name]()
    gmm = _mixture((2,))
    g = torch.Generator().manual_seed(3)
    x = 1.5 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    t = torch.tensor([0.02, 0.1, 0.3, 0.6, 0.9], dtype=torch.float64)
    h = 1e-5
    dlogp_dt = (gmm.log_prob_t(x, t + h, sde) - gmm.log_prob_t(x, t - h, sde)) / (2 * h)

    xg = x.clone().requires_grad_(True)
    logp = gmm.log_prob_t(xg, t, sde)
    (grad,) = torch.autograd.grad(logp.sum(), xg, create_graph=True)
    lap = sum(
        torch.autograd.grad(grad[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(2)
    )
    f = sde.drift(xg, t)
    div_f = torch.zeros_like(t)
    if f.requires_grad:  # VE has no drift
        div_f = sum(
            torch.autograd.grad(f[:, i].sum(), xg, retain_graph=True)[0][:, i] for i in range(2)
        )
    g2 = sde.diffusion(t) ** 2
    rhs = -div_f - (f * grad).sum(1) + 0.5 * g2 * (lap + (grad**2).sum(1))
    torch.testing.assert_close(dlogp_dt, rhs.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(SDES))
def test_log_prob_t_is_a_normalized_density(name):
    """In 1-D, int p_t = 1 and int x p_t = m(t) E[x0] (trapezoid on a wide fine grid)."""
    sde = SDES[name]()
    gmm = GaussianMixture(
        [0.7, 0.3], torch.tensor([[-1.0], [2.0]], dtype=torch.float64), [0.3, 0.5]
    )
    for tv in (0.0, 0.05, 0.5, 1.0):
        t = torch.tensor(tv, dtype=torch.float64)
        m, std = sde.marginal_coeffs(t)
        half = 10 * float(std) + 5 * float(m) + 5
        x = torch.linspace(-half, half, 40001, dtype=torch.float64)[:, None]
        p = gmm.log_prob_t(x, t, sde).exp() if tv > 0 else gmm.log_prob(x).exp()
        assert abs(float(torch.trapezoid(p, x[:, 0])) - 1) < 1e-6
        mean = float(torch.trapezoid(p * x[:, 0], x[:, 0]))
        assert abs(mean - float(m) * float(gmm.mean())) < 1e-5 * (1 + half)


def test_sample_moments_match_mean_and_covariance():
    gmm = _mixture((3,))
    n = 20000
    x = gmm.sample(n, generator=torch.Generator().manual_seed(4))
    assert x.shape == (n, 3) and x.dtype == torch.float64
    cov = gmm.covariance()
    se_mean = (cov.diagonal() / n).sqrt()
    assert ((x.mean(0) - gmm.mean()).abs() / se_mean).max() < 4.5
    emp = torch.cov(x.T)
    # loose relative check of the covariance (MC sd of a variance ~ sqrt(2/n) * var, heavier tails)
    assert ((emp - cov).abs() / cov.diagonal().sqrt().outer(cov.diagonal().sqrt())).max() < 0.05


def test_perturbed_samples_follow_log_prob_t():
    """x_t = m x0 + std z from oracle samples has the mean and covariance of the exact p_t."""
    sde = VPSDE()
    gmm = _mixture((2,))
    g = torch.Generator().manual_seed(5)
    n = 20000
    x0 = gmm.sample(n, generator=g)
    t = torch.full((n,), 0.3, dtype=torch.float64)
    mean, std = sde.marginal_prob(x0, t)
    xt = mean + std[:, None] * torch.randn(n, 2, generator=g, dtype=torch.float64)
    m, s = sde.marginal_coeffs(torch.tensor(0.3, dtype=torch.float64))
    var = m**2 * gmm.covariance().diagonal() + s**2
    assert ((xt.mean(0) - m * gmm.mean()).abs() / (var / n).sqrt()).max() < 4.5
    # and the exact log density is the mixture of the perturbed components
    comp = torch.distributions.Normal(m * gmm.means, (m**2 * gmm.stds**2 + s**2).sqrt())
    lp = torch.logsumexp(comp.log_prob(xt[:5, None]).sum(-1) + gmm.weights.log(), dim=1)
    torch.testing.assert_close(gmm.log_prob_t(xt[:5], t[:5], sde), lp)


def test_class_conditional_score_is_bayes_rule():
    """grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x)."""
    sde = VPSDE()
    gmm = _mixture((2,), labels=[0, 1, 1])
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    t = torch.full((4,), 0.2, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0])
    xg = x.clone().requires_grad_(True)
    logpy = gmm.class_log_prob_t(xg, t, sde).gather(1, y[:, None]).sum()
    (grad_y,) = torch.autograd.grad(logpy, xg)
    torch.testing.assert_close(gmm.score_t(x, t, sde, y=y), gmm.score_t(x, t, sde) + grad_y)
