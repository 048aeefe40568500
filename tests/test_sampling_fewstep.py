"""iPNDM, DEIS tAB and SDE-DPM-Solver++(2M): convergence orders against tight solves with exact
Gaussian-mixture scores (float64, small problems).

* iPNDM / DEIS: the local error of one step taken from an exact history (the states of a dopri5
  solve at rtol 1e-12 on the same grid) falls as h^(p+1); the global error from the lower-order
  warm-up start falls at least as h^2 (the first DDIM step's local h^2 error stays in it).
* SDE-DPM-Solver++(2M): weak order 2. For Gaussian data the sampler is affine in (x_T, z_1..z_S),
  so feeding unit noise one draw at a time gives the exact mean and variance of its output, to
  compare with the exact p_eps -- no Monte-Carlo noise.
"""

import math

import pytest
import torch

from scoresde.oracle import GaussianMixture
from scoresde.sampling import eps_for_sigma, get_sampler, method_options, sample, time_grid
from scoresde.sampling.context import SamplerContext
from scoresde.sampling.methods.deis import _DEIS, _IPNDM, deis_coefficients
from scoresde.sampling.methods.ode import ode_solve
from scoresde.sampling.noise import GlobalNoise
from scoresde.sde import VESDE, VPSDE, SubVPSDE

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}


def square(std=0.5):
    ang = torch.arange(4, dtype=torch.float64) * math.pi / 2
    return GaussianMixture(torch.ones(4), torch.stack([ang.cos(), ang.sin()], 1), std).to(
        torch.float64
    )


def window(sde):
    """Times where sigma = std / m runs from 5 down to 0.2, and states drawn from p_t there."""
    t0 = float(sde.t_from_log_snr(torch.tensor(-math.log(5.0), dtype=torch.float64)))
    return t0, eps_for_sigma(sde, 0.2)


def x_at(sde, gm, t, n=64):
    m, std = (float(v) for v in sde.marginal_coeffs(torch.tensor(t, dtype=torch.float64)))
    g = torch.Generator().manual_seed(2)
    return m * gm.sample(n, torch.Generator().manual_seed(1)) + std * torch.randn(
        n, 2, generator=g, dtype=torch.float64
    )


def local_errors(cls, sde, gm, steps, kind, rho=7.0):
    """{order: error of one step i0 = steps // 2 from the exact states at i0 - order + 1 .. i0}."""
    t0, eps = window(sde)
    grid = time_grid(sde, t0, eps, steps, kind, rho=rho)
    ctx = SamplerContext(sde, gm.score_fn(sde), GlobalNoise(16, (2,), torch.float64, "cpu"))
    i0 = steps // 2
    sub = grid[i0 - 3 : i0 + 2]  # the exact trajectory through the 4-step history window
    xs = ode_solve(ctx, x_at(sde, gm, float(sub[0]), n=16), sub, "dopri5", 1e-12, 1e-12)
    out = {}
    for order in (2, 3, 4):
        method = cls(sde, grid, order)
        for j in range(i0 - order + 1, i0):
            method.step(ctx, j, xs[j - i0 + 3], grid[j], grid[j + 1])
        x1 = method.step(ctx, i0, xs[3], grid[i0], grid[i0 + 1])
        out[order] = float((x1 - xs[4]).pow(2).sum(1).mean().sqrt())
    return out


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize(
    "cls,kind,rho",
    [(_IPNDM, "karras", 1.0), (_DEIS, "logsnr", 7.0)],  # iPNDM's fixed weights: sigma-uniform grid
    ids=["ipndm", "deis"],
)
def test_local_order(sde_name, cls, kind, rho):
    sde, gm = SDES[sde_name], square()
    e32, e64 = (local_errors(cls, sde, gm, n, kind, rho) for n in (32, 64))
    for order in (2, 3, 4):
        slope = math.log2(e32[order] / e64[order])
        assert slope > order + 0.6, (
            f"order {order}: errors {e32[order]}, {e64[order]}, slope {slope:.2f}"
        )


@pytest.mark.parametrize("sde_name", ["vp", "ve"])
@pytest.mark.parametrize("method", ["ipndm", "deis"])
def test_global_convergence_and_higher_order_helps(sde_name, method):
    sde, gm = SDES[sde_name], square()
    t0, eps = window(sde)
    x0 = x_at(sde, gm, t0)
    kw = {"x_init": x0, "t_start": t0, "eps": eps, "denoise": False, "time_grid": "logsnr"}
    ref = sample(sde, gm.score_fn(sde), method="ode", rtol=1e-11, atol=1e-11, **kw).x

    def err(steps, order):
        x = sample(sde, gm.score_fn(sde), method=method, steps=steps, order=order, **kw).x
        return float((x - ref).pow(2).sum(1).mean().sqrt())

    e = [err(n, 4) for n in (8, 16, 32)]
    assert e[0] > e[1] > e[2] and math.log2(e[1] / e[2]) > 1.7, e
    assert err(16, 4) < err(16, 2) < err(16, 1)


def test_deis_coefficients_integrate_polynomials_exactly():
    """sum_j C_ij p(t_{i-j}) = int p(t(sigma)) d sigma for p of degree < order (here p = 1 and t):
    C sums to sigma_{i+1} - sigma_i, and reproduces the integral of t."""
    sde = VPSDE()
    grid = time_grid(sde, 1.0, 1e-2, 10, "logsnr")
    c = deis_coefficients(sde, grid, 5, 3)
    s = torch.exp(-sde.log_snr(grid[5:7]))
    assert sum(c) == pytest.approx(float(s[1] - s[0]), rel=1e-12)
    c1 = deis_coefficients(sde, grid, 5, 1)
    assert c1[0] == pytest.approx(float(s[1] - s[0]), rel=1e-12)  # order 1: DDIM


class _OneHot:
    """Noise source whose draw k is the unit vector on sample 2 + k (sample 0: the mean path,
    sample 1: x_T + 1); everything else zero."""

    chunk_independent = True

    def __init__(self, batch):
        self.batch, self.counter = batch, 0

    def normal(self, counter=None, index=None):
        z = torch.zeros(self.batch, 1, dtype=torch.float64)
        z[2 + self.counter] = 1.0
        self.counter += 1
        return z


def exact_moment_errors(sde, method, steps, **options):
    """(mean error, variance error) of the sampler's output at sigma = 0.1 for data N(0.7, 0.4^2),
    started from the exact p_T."""
    mu0, s0 = 0.7, 0.4
    gm = GaussianMixture(torch.ones(1), torch.tensor([[mu0]]), s0).to(torch.float64)
    eps = eps_for_sigma(sde, 0.1)
    m_T, std_T = (float(v) for v in sde.marginal_coeffs(torch.tensor(1.0, dtype=torch.float64)))
    batch = 4 * steps + 2
    x = torch.full((batch, 1), m_T * mu0, dtype=torch.float64)
    x[1] += 1.0
    ctx = SamplerContext(sde, gm.score_fn(sde), _OneHot(batch))
    out = get_sampler(method).run(ctx, x, method_options(method, steps=steps, **options), 1.0, eps)
    out = out[:, 0]
    a, c = float(out[1] - out[0]), out[2:] - out[0]
    var = a * a * (m_T**2 * s0**2 + std_T**2) + float((c**2).sum())
    m, std = (float(v) for v in sde.marginal_coeffs(torch.tensor(eps, dtype=torch.float64)))
    return abs(float(out[0]) - m * mu0), abs(var - (m**2 * s0**2 + std**2))


@pytest.mark.parametrize("sde_name", list(SDES))
def test_sde_dpm_solver_2m_weak_order_two(sde_name):
    sde = SDES[sde_name]
    v = [exact_moment_errors(sde, "sde_dpm_solver", n)[1] for n in (40, 80, 160)]
    assert v[0] > v[1] > v[2] and min(math.log2(v[0] / v[1]), math.log2(v[1] / v[2])) > 1.6, v
    v1 = [exact_moment_errors(sde, "sde_dpm_solver", n, order=1)[1] for n in (40, 80)]
    assert 0.6 < math.log2(v1[0] / v1[1]) < 1.4 and v1[1] > 10 * v[1], v1  # order 1 is first order


@pytest.mark.parametrize("method", ["ipndm", "deis", "sde_dpm_solver"])
def test_fewer_steps_than_order_start_low(method):
    """steps 1..3 with order 4 (2 for 2M): the warm-up uses order min(order, i + 1)."""
    sde, gm = SDES["vp"], square().to(torch.float32)
    for steps in (1, 2, 3):
        res = sample(sde, gm.score_fn(sde), (32, 2), method=method, steps=steps)
        assert torch.isfinite(res.x).all() and res.nfe == steps + 1
