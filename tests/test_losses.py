"""Denoising score matching losses, checked against the Gaussian-mixture oracle."""

import math

import pytest
import torch

from scoresde.losses import (
    ddpm_loss,
    dsm_loss,
    importance_normalizer,
    likelihood_weight,
    likelihood_weight_integral,
    ncsn_loss,
    sample_importance_time,
)
from scoresde.oracle import GaussianMixture
from scoresde.score import ScoreModel
from scoresde.sde import VESDE, VPSDE, SubVPSDE

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


def _gmm():
    means = torch.tensor([[-2.0, 0.0], [1.5, 1.0], [0.0, -2.0]], dtype=torch.float64)
    return GaussianMixture([0.4, 0.4, 0.2], means, [0.4, 0.6, 0.3])


def _oracle_model(gmm, sde, scale=1.0, shift=0.0):
    """model(x, t) = scale * exact score + shift (scale = 1, shift = 0: the true score)."""
    return lambda x, t: scale * gmm.score_t(x, t, sde) + shift


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize(
    "weighting, imp", [("sigma2", False), ("likelihood", False), ("likelihood", True)]
)
def test_oracle_score_has_the_lowest_dsm_loss(name, weighting, imp):
    """With the same draws of (t, z), the exact score beats scaled and shifted versions of it."""
    sde = SDES[name]()
    gmm = _gmm()
    x0 = gmm.sample(4096, generator=torch.Generator().manual_seed(0))
    kw = {"weighting": weighting, "importance_sampling": imp, "eps": 1e-3}

    def loss(model):
        return float(dsm_loss(model, sde, x0, generator=torch.Generator().manual_seed(1), **kw))

    best = loss(_oracle_model(gmm, sde))
    for scale, shift in [(0.9, 0.0), (1.1, 0.0), (1.0, 0.05), (1.0, -0.05)]:
        assert loss(_oracle_model(gmm, sde, scale, shift)) > best, (scale, shift)


@pytest.mark.parametrize("name", list(SDES))
def test_importance_sampled_times_follow_g2_over_std2(name):
    """KS test of the inverse-CDF draws against the CDF from a fine trapezoid quadrature."""
    sde = SDES[name]()
    eps = 1e-5
    n = 20000
    t = sample_importance_time(sde, n, eps, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert t.min() >= eps and t.max() <= sde.T
    grid = torch.logspace(math.log10(eps), 0, 200001, dtype=torch.float64)
    w = likelihood_weight(sde, grid)
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumulative_trapezoid(w, grid)])
    Z = float(cdf[-1])
    assert abs(importance_normalizer(sde, eps) / Z - 1) < 1e-6
    F = likelihood_weight_integral(sde, grid)
    torch.testing.assert_close(F - F[0], cdf, rtol=1e-6, atol=1e-6)
    cdf = cdf / Z
    ts = torch.sort(t).values
    model_cdf = torch.from_numpy(__import__("numpy").interp(ts.numpy(), grid.numpy(), cdf.numpy()))
    emp = torch.arange(1, n + 1, dtype=torch.float64) / n
    ks = float((emp - model_cdf).abs().max())
    assert ks < 1.95 / math.sqrt(n)  # 0.1% level


@pytest.mark.parametrize("name", list(SDES))
def test_importance_sampled_likelihood_loss_has_the_same_expectation(name):
    """E[IS loss] equals E[explicitly g^2-weighted loss] (Monte Carlo, 4.5 combined std errors).

    Uses a slightly wrong score (0.8 x exact + 0.1) so the loss depends on t. The IS estimator
    without the constant Z / (T - eps) would be off by a factor ~Z (~10), far outside the bars.
    """
    sde = SDES[name]()
    gmm = _gmm()
    model = _oracle_model(gmm, sde, 0.8, 0.1)
    n = 40000
    eps = 1e-3
    x0 = gmm.sample(n, generator=torch.Generator().manual_seed(2))
    kw = {"weighting": "likelihood", "eps": eps, "per_sample": True}
    a = dsm_loss(
        model, sde, x0, importance_sampling=True, generator=torch.Generator().manual_seed(3), **kw
    )
    b = dsm_loss(
        model, sde, x0, importance_sampling=False, generator=torch.Generator().manual_seed(4), **kw
    )
    se = math.sqrt(float(a.var()) / n + float(b.var()) / n)
    assert abs(float(a.mean()) - float(b.mean())) < 4.5 * se, (float(a.mean()), float(b.mean()), se)
    assert float(a.std()) < float(b.std())  # the point of importance sampling
    assert importance_normalizer(sde, eps) > 3  # so a missing constant would be detected


def test_dsm_loss_reduce_and_sigma2_definition():
    sde = VPSDE()
    x0 = torch.randn(8, 3, 2, dtype=torch.float64)

    def model(x, t):
        return torch.zeros_like(x)

    g = torch.Generator().manual_seed(0)
    mean = dsm_loss(model, sde, x0, generator=g, per_sample=True)
    g = torch.Generator().manual_seed(0)
    total = dsm_loss(model, sde, x0, generator=g, reduce="sum", per_sample=True)
    torch.testing.assert_close(total, 6 * mean)
    # score 0: loss = ||z||^2 / D with the same z the loss drew (t first, then z)
    g = torch.Generator().manual_seed(0)
    torch.rand(8, generator=g, dtype=torch.float64)
    z = torch.randn(8, 3, 2, generator=g, dtype=torch.float64)
    torch.testing.assert_close(mean, z.pow(2).reshape(8, -1).mean(1))


def test_dsm_loss_with_labels_and_score_model_gradients():
    from scoresde.nets import MLP

    sde = VPSDE()
    net = MLP(2, hidden=16, num_blocks=1, embed_dim=8, num_classes=3)
    model = ScoreModel(net, sde)
    loss = dsm_loss(model, sde, torch.randn(16, 2), y=torch.randint(0, 3, (16,)))
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert net.out.weight.grad.abs().sum() > 0


def test_non_finite_inputs_and_outputs_raise():
    sde = VPSDE()
    x0 = torch.randn(4, 2)
    bad = x0.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="x0"):
        dsm_loss(lambda x, t: x, sde, bad)

    def nan_model(x, t):
        out = -x.clone()
        out[1] = float("inf")
        return out

    for loss_fn, s in ((dsm_loss, sde), (ddpm_loss, sde), (ncsn_loss, VESDE())):
        with pytest.raises(FloatingPointError, match="model output is non-finite at t"):
            loss_fn(nan_model, s, x0)


def test_bad_options_raise():
    sde = VPSDE()
    x0 = torch.randn(4, 2)

    def model(x, t):
        return -x

    with pytest.raises(ValueError, match="weighting"):
        dsm_loss(model, sde, x0, weighting="uniform")
    with pytest.raises(ValueError, match="reduce"):
        dsm_loss(model, sde, x0, reduce="max")
    with pytest.raises(ValueError, match="importance_sampling"):
        dsm_loss(model, sde, x0, importance_sampling=True)
    with pytest.raises(ValueError, match="eps"):
        dsm_loss(model, sde, x0, eps=0.0)
    with pytest.raises(TypeError, match="VPSDE"):
        ddpm_loss(model, VESDE(), x0)
    with pytest.raises(TypeError, match="VESDE"):
        ncsn_loss(model, sde, x0)


class _EpsNet(torch.nn.Module):
    """A fixed 'noise prediction' eps_hat = 0.5 x, recording the conditioning it saw."""

    def forward(self, x, c, y=None):
        self.c = c
        return 0.5 * x


def test_ddpm_loss_is_l_simple_on_the_eps_net():
    """With ScoreModel(eps), ddpm_loss = ||z - eps_hat||^2 at the chain's noise level abar_i."""
    sde = VPSDE()
    x0 = torch.randn(64, 3, dtype=torch.float64)
    model = ScoreModel(_EpsNet(), sde)
    per = ddpm_loss(model, sde, x0, generator=torch.Generator().manual_seed(0), per_sample=True)
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, sde.N, (64,), generator=g)
    z = torch.randn(64, 3, generator=g, dtype=torch.float64)
    abar = sde.alphas_cumprod[i]
    xt = abar.sqrt()[:, None] * x0 + (1 - abar).sqrt()[:, None] * z
    torch.testing.assert_close(per, (z - 0.5 * xt).pow(2).mean(1))
    # the continuous time handed to the model has m(t)^2 = abar_i, about (i + 1) / (N - 1)
    m, _ = sde.marginal_coeffs(model.net.c)
    torch.testing.assert_close(m**2, abar)
    assert ((model.net.c - (i + 1) / 999).abs() < 3e-3).all()


def test_ncsn_loss_matches_its_definition():
    sde = VESDE()
    x0 = torch.randn(64, 3, dtype=torch.float64)
    model = ScoreModel(_EpsNet(), sde, "score")
    per = ncsn_loss(model, sde, x0, generator=torch.Generator().manual_seed(0), per_sample=True)
    g = torch.Generator().manual_seed(0)
    i = torch.randint(0, sde.N, (64,), generator=g)
    z = torch.randn(64, 3, generator=g, dtype=torch.float64)
    sig = sde.discrete_sigmas[i][:, None]
    xt = x0 + sig * z
    torch.testing.assert_close(per, (sig * 0.5 * xt + z).pow(2).mean(1))
    # exact kernel std at the time handed to the model equals sigma_i
    t = torch.exp(torch.as_tensor(model.net.c))  # log sigma(t) -> sigma(t)
    _, std = sde.marginal_coeffs(
        torch.log(t / sde.sigma_min) / math.log(sde.sigma_max / sde.sigma_min)
    )
    torch.testing.assert_close(std, sig[:, 0])


@pytest.mark.parametrize("loss_fn, sde_cls", [(ddpm_loss, VPSDE), (ncsn_loss, VESDE)])
def test_discrete_losses_prefer_the_oracle(loss_fn, sde_cls):
    sde = sde_cls()
    gmm = _gmm()
    x0 = gmm.sample(4096, generator=torch.Generator().manual_seed(0))

    def loss(model):
        return float(loss_fn(model, sde, x0, generator=torch.Generator().manual_seed(1)))

    best = loss(_oracle_model(gmm, sde))
    for scale, shift in [(0.9, 0.0), (1.1, 0.0), (1.0, 0.05)]:
        assert loss(_oracle_model(gmm, sde, scale, shift)) > best
