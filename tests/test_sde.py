"""Forward SDEs: closed-form marginals against simulation, log-SNR inversion, discrete chains."""

import math

import pytest
import torch
import torchsde

from scoresde.sde import VESDE, VPSDE, SubVPSDE, batch_view

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}


class _TorchsdeForward(torch.nn.Module):
    """The forward SDE in torchsde's interface (diagonal noise, g(t) independent of the state)."""

    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, sde):
        super().__init__()
        self.sde = sde

    def f(self, t, y):
        return self.sde.drift(y, t)

    def g(self, t, y):
        return self.sde.diffusion(t).expand_as(y)


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_prob_matches_simulated_forward_sde(name):
    """Mean and variance of x_t simulated with torchsde (Euler, dt = 1e-3) match marginal_prob.

    Tolerances are 4.5 Monte-Carlo standard errors (mean: std / sqrt(n); variance: sqrt(2 / (n-1))
    relative). VE at t = 0.05 tells the exact kernel (std^2 = sigma^2 - sigma_min^2) from
    sigma(t)^2 by 75%.
    """
    sde = SDES[name]()
    n = 2000
    x0 = torch.tensor([-1.0, 0.5, 2.0, 0.0], dtype=torch.float64).repeat(n, 1)
    ts = torch.tensor([0.0, 0.05, 0.3, 1.0], dtype=torch.float64)
    bm = torchsde.BrownianInterval(0.0, 1.0, size=x0.shape, dtype=torch.float64, dt=1e-3, entropy=0)
    ys = torchsde.sdeint(_TorchsdeForward(sde), x0, ts, method="euler", dt=1e-3, bm=bm)
    for k in range(1, len(ts)):
        mean, std = sde.marginal_prob(x0[:1], ts[k : k + 1])
        z_mean = (ys[k].mean(0) - mean[0]) / (std / math.sqrt(n))
        z_var = (ys[k].var(0) / std**2 - 1) / math.sqrt(2 / (n - 1))
        assert z_mean.abs().max() < 4.5, (name, float(ts[k]), z_mean)
        assert z_var.abs().max() < 4.5, (name, float(ts[k]), z_var)


@pytest.mark.parametrize("name", list(SDES))
def test_marginal_coeffs_are_the_closed_forms(name):
    t = torch.linspace(1e-4, 1.0, 101, dtype=torch.float64)
    m, std = SDES[name]().marginal_coeffs(t)
    if name == "ve":
        expect_m = torch.ones_like(t)
        expect_var = (0.01 * 5000.0**t) ** 2 - 0.01**2
    else:
        B = 0.1 * t + 0.5 * 19.9 * t**2
        expect_m = torch.exp(-0.5 * B)
        expect_var = 1 - torch.exp(-B) if name == "vp" else (1 - torch.exp(-B)) ** 2
    torch.testing.assert_close(m, expect_m, rtol=1e-12, atol=0)
    torch.testing.assert_close(std**2, expect_var, rtol=1e-10, atol=0)


@pytest.mark.parametrize("name", list(SDES))
def test_log_snr_inversion_is_consistent(name):
    sde = SDES[name]()
    t = torch.cat(
        [
            torch.logspace(-6, -1, 30, dtype=torch.float64),
            torch.linspace(0.1, 1, 31, dtype=torch.float64)[1:],
        ]
    )
    lmb = sde.log_snr(t)
    m, std = sde.marginal_coeffs(t)
    torch.testing.assert_close(lmb, torch.log(m / std), rtol=1e-10, atol=1e-10)
    assert (lmb[1:] < lmb[:-1]).all(), "log-SNR must decrease strictly in t"
    torch.testing.assert_close(sde.t_from_log_snr(lmb), t, rtol=1e-8, atol=1e-12)
    # float32: finite, monotone, and inverted to float32 precision
    t32 = torch.linspace(1e-5, 1.0, 200)
    l32 = sde.log_snr(t32)
    assert torch.isfinite(l32).all() and (l32[1:] < l32[:-1]).all()
    torch.testing.assert_close(sde.t_from_log_snr(l32), t32, rtol=1e-3, atol=1e-5)


def test_vp_discrete_betas_are_ddpm_schedule():
    sde = VPSDE()
    betas = sde.discrete_betas
    assert betas.shape == (1000,)
    assert math.isclose(float(betas[0]), 1e-4, rel_tol=1e-12)
    assert math.isclose(float(betas[-1]), 0.02, rel_tol=1e-12)
    torch.testing.assert_close(sde.alphas_cumprod, torch.cumprod(1 - betas, 0))
    # the chain's abar_i approximates the continuous m(t)^2 at t = (i + 1) / (N - 1)
    i = torch.arange(1000)
    m, _ = sde.marginal_coeffs((i + 1).double() / 999)
    assert (sde.alphas_cumprod - m**2).abs().max() < 2e-3
    rel = (torch.log(sde.alphas_cumprod[100:]) / torch.log(m[100:] ** 2) - 1).abs()
    assert rel.max() < 0.01


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_discretize_chain_accumulates_the_discrete_marginals(name):
    """Running x_{i+1} = x_i + f_i + G_i z_i on means and variances gives the discrete marginals."""
    sde = SDES[name](N=1000 if name == "subvp" else 50)
    x = torch.tensor([[1.5, -2.0]], dtype=torch.float64)
    mean, var = x.clone(), torch.zeros(1, dtype=torch.float64)
    for i in range(sde.N):
        t = torch.full((1,), i / (sde.N - 1), dtype=torch.float64)
        f, G = sde.discretize(mean, t)
        f_unit, _ = sde.discretize(torch.ones_like(mean), t)
        a = 1 + f_unit[0, 0]  # the step is linear: x + f = a x
        mean = mean + f
        var = a**2 * var + G**2
    if name == "vp":
        abar = sde.alphas_cumprod[-1]
        torch.testing.assert_close(mean, x * abar.sqrt())
        torch.testing.assert_close(var, 1 - abar.reshape(1))
    elif name == "ve":
        torch.testing.assert_close(mean, x)
        torch.testing.assert_close(var, sde.discrete_sigmas[-1:] ** 2)
    else:  # sub-VP uses Euler-Maruyama: mean factor prod (1 - beta dt / 2) ~ m(1)
        m, std = sde.marginal_coeffs(torch.ones(1, dtype=torch.float64))
        torch.testing.assert_close(mean, x * m, rtol=0.02, atol=0)
        torch.testing.assert_close(var, std**2, rtol=0.02, atol=0)


@pytest.mark.parametrize(
    "cls, kwargs, param",
    [
        (VPSDE, {"beta_min": 0.0}, "beta_min"),
        (VPSDE, {"beta_min": 1.0, "beta_max": 0.5}, "beta_max"),
        (SubVPSDE, {"beta_min": -1.0}, "beta_min"),
        (SubVPSDE, {"beta_max": 0.1}, "beta_max"),
        (VESDE, {"sigma_min": 0.0}, "sigma_min"),
        (VESDE, {"sigma_min": 1.0, "sigma_max": 1.0}, "sigma_max"),
        (VPSDE, {"N": 0}, "N"),
        (VESDE, {"N": 2.5}, "N"),
    ],
)
def test_bad_hyperparameters_raise_naming_the_parameter(cls, kwargs, param):
    with pytest.raises(ValueError, match=param):
        cls(**kwargs)


@pytest.mark.parametrize("name", list(SDES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_any_shape_and_dtype(name, dtype):
    sde = SDES[name]()
    x0 = torch.randn(3, 2, 4, 4, dtype=dtype)
    t = torch.tensor([0.1, 0.5, 1.0], dtype=dtype)
    mean, std = sde.marginal_prob(x0, t)
    assert mean.shape == x0.shape and mean.dtype == dtype
    assert std.shape == (3,) and std.dtype == dtype
    f, g = sde.sde(x0, t)
    assert f.shape == x0.shape and g.shape == (3,)
    z = sde.prior_sample((3, 2, 4, 4), generator=torch.Generator().manual_seed(0), dtype=dtype)
    assert z.shape == x0.shape and z.dtype == dtype
    s = sde.prior_std()
    expect = torch.distributions.Normal(0.0, s).log_prob(z.double()).reshape(3, -1).sum(1)
    torch.testing.assert_close(sde.prior_logp(z).double(), expect, rtol=1e-5, atol=1e-3)
    assert batch_view(std, x0).shape == (3, 1, 1, 1)


@pytest.mark.parametrize("name", list(SDES))
def test_prior_matches_marginal_at_T(name):
    sde = SDES[name]()
    m, std = sde.marginal_coeffs(torch.tensor([sde.T], dtype=torch.float64))
    assert abs(float(std) - sde.prior_std()) / sde.prior_std() < 1e-3
    assert float(m) < 1e-2 or name == "ve"


@pytest.mark.parametrize("name", list(SDES))
def test_reverse_drift_and_probability_flow(name):
    sde = SDES[name]()
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.rand(4, dtype=torch.float64)
    s = torch.randn(4, 3, dtype=torch.float64)
    g2 = sde.diffusion(t)[:, None] ** 2
    rev = sde.reverse(lambda x_, t_: s)
    pf = sde.reverse(lambda x_, t_: s, probability_flow=True)
    torch.testing.assert_close(rev.drift(x, t), sde.drift(x, t) - g2 * s)
    torch.testing.assert_close(pf.drift(x, t), sde.drift(x, t) - 0.5 * g2 * s)
    assert (pf.diffusion(t) == 0).all()
