"""Samplers against the Gaussian-mixture oracle: exact scores, so the only error is the sampler's.

Tolerances come from the Monte-Carlo noise floor measured in the test (exact vs exact sets).
"""

import math

import pytest
import torch

from scoresde.metrics import sliced_wasserstein
from scoresde.oracle import GaussianMixture
from scoresde.sampling import encode, sample
from scoresde.sde import VESDE, VPSDE, SubVPSDE

N = 2000
SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}


def ring(k=4, radius=2.0, std=0.35):
    ang = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k
    return GaussianMixture(
        torch.ones(k), torch.stack([radius * ang.cos(), radius * ang.sin()], 1), std
    ).to(torch.float32)


def mix8():
    g = torch.Generator().manual_seed(3)
    means = 1.5 * torch.randn(3, 8, generator=g)
    stds = 0.3 + 0.4 * torch.rand(3, 8, generator=g)
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2]), means, stds)


class Floor:
    """Noise floors of sliced W2 and mean log p0 for n exact samples.

    (4 exact sets vs a reference.)
    """

    def __init__(self, gm, n=N):
        self.gm = gm
        self.ref = gm.sample(n, torch.Generator().manual_seed(99))
        sets = [gm.sample(n, torch.Generator().manual_seed(200 + k)) for k in range(4)]
        sw = torch.tensor([self.sw(x) for x in sets])
        self.sw_tol = float(sw.mean() + 3 * sw.std())
        lp = gm.log_prob(self.ref)
        self.lp = float(lp.mean())
        self.lp_tol = (
            4 * math.sqrt(2) * float(lp.std()) / math.sqrt(n)
        )  # 4 sd of a difference of means

    def sw(self, x):
        return sliced_wasserstein(
            x, self.ref, n_projections=64, generator=torch.Generator().manual_seed(1)
        )

    def check(self, x, label, lp_slack=0.0, sw_slack=1.0):
        assert torch.isfinite(x).all(), label
        sw = self.sw(x)
        lp = float(self.gm.log_prob(x).mean())
        assert sw <= self.sw_tol * sw_slack, (
            f"{label}: sliced W2 {sw:.4f} > floor {self.sw_tol:.4f}"
        )
        assert abs(lp - self.lp) <= self.lp_tol + lp_slack, (
            f"{label}: mean log p0 {lp:.4f} vs exact {self.lp:.4f} "
            f"(tol {self.lp_tol:.4f} + {lp_slack})"
        )


@pytest.fixture(scope="module")
def ring_floor():
    return Floor(ring())


# (method, steps, options, log-p slack for the bias of the discretization at this step count)
CASES = [
    ("euler_maruyama", 300, {}, 0.05),
    ("reverse_diffusion", 300, {}, 0.05),
    ("ancestral", 300, {}, 0.05),
    ("pc", 150, {"langevin_norm": "batch"}, 0.05),
    (
        "annealed_langevin",
        100,
        {"corrector_steps": 5, "snr": 0.5},
        0.2,
    ),  # unadjusted Langevin: biased
    ("ode", None, {"rtol": 1e-4, "atol": 1e-4}, 0.0),
    ("sde", 300, {}, 0.05),
    ("ddim", 40, {}, 0.03),
    ("ddim", 100, {"eta": 1.0}, 0.05),
    ("heun", 15, {}, 0.03),
    ("dpm_solver", 20, {}, 0.03),
    ("adaptive", None, {"rtol": 0.005, "atol": 0.002}, 0.05),
]


@pytest.mark.parametrize("sde_name", list(SDES))
@pytest.mark.parametrize(
    "method,steps,opts,slack", CASES, ids=[f"{c[0]}{c[2] or ''}" for c in CASES]
)
def test_sampler_reproduces_2d_mixture(ring_floor, sde_name, method, steps, opts, slack):
    sde = SDES[sde_name]
    gm = ring_floor.gm
    res = sample(
        sde,
        gm.score_fn(sde),
        (N, 2),
        method=method,
        steps=steps,
        generator=torch.Generator().manual_seed(5),
        **opts,
    )
    ring_floor.check(res.x, f"{method} {sde_name}", lp_slack=slack)


@pytest.mark.parametrize(
    "method,steps,opts",
    [
        ("euler_maruyama", 300, {}),
        ("pc", 150, {"langevin_norm": "batch"}),
        ("ode", None, {}),
        ("dpm_solver", 25, {}),
        ("heun", 30, {}),
        ("ddim", 100, {}),
    ],
)
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_sampler_reproduces_8d_mixture(method, steps, opts, sde_name):
    gm = mix8()
    floor = Floor(gm)
    sde = SDES[sde_name]
    res = sample(
        sde,
        gm.score_fn(sde),
        (N, 8),
        method=method,
        steps=steps,
        generator=torch.Generator().manual_seed(6),
        **opts,
    )
    floor.check(res.x, f"{method} {sde_name}", lp_slack=0.1)


def test_euler_maruyama_weak_error_shrinks_first_order():
    """On Gaussian data the EM bias of the sample variance falls ~1/steps (weak order 1)."""
    gm = GaussianMixture([1.0], torch.tensor([[1.0, -1.0]], dtype=torch.float64), 0.5)
    sde = VPSDE()
    errs = []
    for steps in (20, 40, 80):
        # same seeds for every run: the Monte-Carlo error is common and cancels in the trend
        x = sample(
            sde,
            gm.score_fn(sde),
            (20000, 2),
            "euler_maruyama",
            steps,
            generator=torch.Generator().manual_seed(0),
            dtype=torch.float64,
        ).x
        errs.append(abs(float(x.var(0).mean()) - 0.25))
    assert errs[0] > errs[1] > errs[2]
    rate = math.log2(errs[1] / errs[2])
    assert 0.7 < rate < 1.5, (errs, rate)


@pytest.mark.parametrize(
    "method,steps_list,min_order",
    [
        ("ddim", (8, 16, 32), 0.8),
        ("heun", (4, 8, 16), 1.6),
        ("dpm_solver", (8, 16, 32), 1.5),
    ],
)
@pytest.mark.parametrize("sde_name", ["vp", "ve"])
def test_deterministic_solvers_converge_to_ode_solution(method, steps_list, min_order, sde_name):
    """Endpoint error vs a tight dopri5 solve from the same prior sample falls at the method's
    order.
    """
    gm = ring().to(torch.float64)
    sde = SDES[sde_name]
    z = sde.prior_sample((200, 2), torch.Generator().manual_seed(2), dtype=torch.float64)
    kw = {"x_init": z, "denoise": False, "eps": 1e-2}
    ref = sample(sde, gm.score_fn(sde), method="ode", rtol=1e-10, atol=1e-10, **kw).x
    errs = []
    for steps in steps_list:
        opts = {"lower_order_final": False} if method == "dpm_solver" else {}
        x = sample(sde, gm.score_fn(sde), None, method, steps, **kw, **opts).x
        errs.append(float((x - ref).pow(2).sum(1).mean().sqrt()))
    order = math.log2(errs[-2] / errs[-1])
    assert errs[0] > errs[1] > errs[2], errs
    assert order > min_order, (errs, order)


@pytest.mark.parametrize("sde_name", list(SDES))
def test_ode_encode_decode_round_trip(sde_name):
    gm = ring()
    sde = SDES[sde_name]
    x = gm.sample(256, torch.Generator().manual_seed(4)).double()
    gm64 = gm.to(torch.float64)
    enc = encode(sde, gm64.score_fn(sde), x, eps=1e-3, rtol=1e-7, atol=1e-7)
    assert enc.x.shape == x.shape and enc.nfe > 0
    # the latent is (approximately) prior-distributed
    assert abs(float(enc.x.std()) / sde.prior_std() - 1.0) < 0.15
    dec = sample(
        sde,
        gm64.score_fn(sde),
        method="ode",
        x_init=enc.x,
        denoise=False,
        eps=1e-3,
        rtol=1e-7,
        atol=1e-7,
    )
    assert torch.allclose(dec.x, x, atol=1e-3), float((dec.x - x).abs().max())


def test_ode_sampler_is_deterministic_given_the_prior_sample():
    gm = ring()
    sde = VPSDE()
    z = torch.randn(100, 2)
    a = sample(sde, gm.score_fn(sde), method="ode", x_init=z).x
    b = sample(
        sde, gm.score_fn(sde), method="ode", x_init=z, generator=torch.Generator().manual_seed(9)
    ).x
    assert torch.equal(a, b)
