"""UniPC and the ``bump`` logSNR grid against the Gaussian-mixture oracle (exact scores).

Convergence order against a tight dopri5 solve from the same prior sample; sample quality at 15
score evaluations against exact samples with Monte-Carlo noise floors; NFE counted by a wrapper.
"""

import math

import pytest
import torch

from scoresde.metrics import sliced_wasserstein
from scoresde.oracle import GaussianMixture
from scoresde.sampling import METHODS, eps_for_sigma, sample, sample_unipc, time_grid
from scoresde.sampling.methods.unipc import unipc_coefficients
from scoresde.sde import VESDE, VPSDE, SubVPSDE

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}


def ring(k=8, radius=2.0, std=0.25, dtype=torch.float32):
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    gm = GaussianMixture(
        torch.ones(k), torch.stack([radius * ang.cos(), radius * ang.sin()], 1), std
    )
    return gm.to(dtype)


class Counted:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.fn(x, t)


def test_registered():
    assert "unipc" in METHODS
    assert sample_unipc.__name__ == "sample_unipc"


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_convergence_order(name):
    """Global error vs a dopri5 solve (rtol 1e-9) from the same x_T, to the same end time:
    multistep UniP-3 + UniC is 4th order, so 4x the steps must cut the error by > 2^(2*3)."""
    sde = SDES[name]
    gm = ring(k=4, std=0.35, dtype=torch.float64)
    eps = eps_for_sigma(sde, 0.02)
    x_T = sde.prior_sample((200, 2), torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = sample(
        sde,
        gm.score_fn(sde),
        method="ode",
        x_init=x_T,
        eps=eps,
        denoise=False,
        rtol=1e-9,
        atol=1e-9,
    ).x
    errs = []
    for steps in (40, 160):
        x = sample_unipc(
            sde, gm.score_fn(sde), steps=steps, x_init=x_T, denoise=False, time_grid="logsnr"
        ).x
        errs.append(float((x - ref).abs().mean()))
    order = math.log(errs[0] / errs[1]) / math.log(4.0)
    assert errs[1] < 1e-5, errs
    assert order > 3.0, f"observed order {order:.2f} (errors {errs})"


@pytest.fixture(scope="module")
def floor():
    """Exact-vs-exact floors for n = 2000 on the 8-Gaussian ring (std 0.25, radius 2)."""
    gm, n = ring(), 2000
    ref = gm.sample(n, torch.Generator().manual_seed(99))

    def sw(x):
        return sliced_wasserstein(
            x, ref, n_projections=64, generator=torch.Generator().manual_seed(1)
        )

    sws = torch.tensor([sw(gm.sample(n, torch.Generator().manual_seed(300 + k))) for k in range(4)])
    lp = gm.log_prob(ref)
    return {
        "gm": gm,
        "n": n,
        "sw": sw,
        "sw_tol": float(sws.mean() + 3 * sws.std()),
        "lp": float(lp.mean()),
        "lp_tol": 4 * math.sqrt(2) * float(lp.std()) / math.sqrt(n),
    }


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
def test_quality_at_15_nfe(floor, name):
    """Defaults (14 steps + the denoising evaluation = 15 NFE) are indistinguishable from exact
    samples: sliced W2 within the exact-vs-exact floor, mean log p0 within 4 sd of a difference."""
    sde, gm = SDES[name], floor["gm"]
    score = Counted(gm.score_fn(sde))
    res = sample(
        sde, score, (floor["n"], 2), method="unipc", generator=torch.Generator().manual_seed(5)
    )
    assert res.nfe == score.calls == 15
    assert torch.isfinite(res.x).all()
    sw = floor["sw"](res.x)
    lp = float(gm.log_prob(res.x).mean())
    assert sw <= floor["sw_tol"], f"sliced W2 {sw:.4f} > floor {floor['sw_tol']:.4f}"
    assert abs(lp - floor["lp"]) <= floor["lp_tol"], (
        f"mean log p0 {lp:.4f} vs {floor['lp']:.4f} +- {floor['lp_tol']:.4f}"
    )


def test_low_order_is_worse(floor):
    """The same 15 NFE with first-order steps (DDIM-like) is measurably off: the test can fail."""
    sde, gm = SDES["vp"], floor["gm"]
    res = sample(
        sde,
        gm.score_fn(sde),
        (floor["n"], 2),
        method="unipc",
        order=1,
        unic=False,
        steps=6,
        generator=torch.Generator().manual_seed(5),
    )
    lp = float(gm.log_prob(res.x).mean())
    assert abs(lp - floor["lp"]) > floor["lp_tol"]


@pytest.mark.parametrize("name", ["vp", "subvp", "ve"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_few_steps_finite_and_counted(name, order):
    sde, gm = SDES[name], ring()
    for steps in (1, 2, 3):
        for denoise in (True, False):
            score = Counted(gm.score_fn(sde))
            res = sample(
                sde,
                score,
                (64, 2),
                method="unipc",
                steps=steps,
                order=order,
                denoise=denoise,
                generator=torch.Generator().manual_seed(0),
            )
            assert torch.isfinite(res.x).all(), (steps, order, denoise)
            assert res.nfe == score.calls == steps + int(denoise)


def test_options_and_trajectory():
    sde, gm = SDES["vp"], ring()
    g = torch.Generator().manual_seed(0)
    a = sample(
        sde, gm.score_fn(sde), (32, 2), method="unipc", steps=5, generator=g, return_trajectory=True
    )
    assert a.trajectory.shape == (6, 32, 2) and float(a.times[-1]) == 0.0
    b = sample(
        sde,
        gm.score_fn(sde),
        (32, 2),
        method="unipc",
        steps=5,
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(a.x, b.x)  # reproducible
    c = sample(
        sde,
        gm.score_fn(sde),
        (32, 2),
        method="unipc",
        steps=5,
        end_sigma=None,
        eps=1e-3,
        variant="bh1",
        time_grid="karras",
        final_corrector=False,
        generator=torch.Generator().manual_seed(0),
    )
    assert c.nfe == 6 and torch.isfinite(c.x).all()
    for bad in (
        {"order": 5},
        {"variant": "bh3"},
        {"lambda_width": 0.0},
        {"end_sigma": -1.0},
        {"corrector": "langevin"},
        {"time_grid": "cosine"},
    ):
        with pytest.raises((ValueError, TypeError)):
            sample(sde, gm.score_fn(sde), (4, 2), method="unipc", steps=3, **bad)


def test_bump_grid_and_eps_for_sigma():
    for sde in SDES.values():
        t = time_grid(sde, 1.0, 1e-3, 10, "bump")
        assert t.shape == (11,) and float(t[0]) == 1.0 and float(t[-1]) == 1e-3
        assert bool((t[1:] < t[:-1]).all())
        lam = sde.log_snr(t)
        h = lam[1:] - lam[:-1]
        assert float(h.min()) < 0.7 * float(h[0]) and float(h.min()) < 0.7 * float(
            h[-1]
        )  # dense in the middle
        eps = eps_for_sigma(sde, 0.02)
        m, std = sde.marginal_coeffs(torch.tensor(eps, dtype=torch.float64))
        assert abs(float(std / m) - 0.02) < 1e-9


def test_unipc_coefficients():
    """Order 1: rho_c = 1/2; any order: the corrector solves R rho = b, so with r = (1,) (order 1
    system) and general r the coefficients reproduce polynomials, e.g. sum(rho_c) = b_1."""
    B_h, rho_p, rho_c, r = unipc_coefficients(0.5, [])
    assert rho_p == [] and rho_c == [0.5] and r == [1.0] and B_h == pytest.approx(math.expm1(-0.5))
    h = 0.3
    B_h, rho_p, rho_c, r = unipc_coefficients(h, [-1.0, -2.0])
    hh = -h
    b1 = (math.expm1(hh) / hh - 1.0) / B_h
    assert sum(rho_c) == pytest.approx(b1)
    assert len(rho_p) == 2 and len(rho_c) == 3
