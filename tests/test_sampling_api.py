"""The sampling API: NFE counting, reproducibility, chunk independence, hooks, dtypes, bad input."""

import math

import pytest
import torch

from scoresde.oracle import GaussianMixture
from scoresde.sampling import METHODS, ScoreError, encode, sample, sample_dpm_solver
from scoresde.sde import VESDE, VPSDE, SubVPSDE

SDES = {"vp": VPSDE(), "subvp": SubVPSDE(), "ve": VESDE()}
FEW = {"ode": {"steps": 3}, "adaptive": {"rtol": 0.5, "atol": 0.5}}


def gm2():
    ang = torch.arange(4, dtype=torch.float64) * math.pi / 2
    return GaussianMixture(torch.ones(4), torch.stack([2 * ang.cos(), 2 * ang.sin()], 1), 0.3).to(
        torch.float32
    )


class Counter:
    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, t):
        self.calls += 1
        return self.fn(x, t)


def kwargs(method, steps=4):
    kw = {"steps": steps}
    if method in FEW:
        kw = dict(FEW[method])
    return kw


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sde_name", list(SDES))
def test_reported_nfe_equals_counted_calls(method, sde_name):
    sde = SDES[sde_name]
    fn = Counter(gm2().score_fn(sde))
    res = sample(
        sde,
        fn,
        (16, 2),
        method=method,
        generator=torch.Generator().manual_seed(0),
        **kwargs(method),
    )
    assert res.nfe == fn.calls > 0
    assert res.x.shape == (16, 2) and torch.isfinite(res.x).all()


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sde_name", list(SDES))
def test_one_step_never_returns_nan(method, sde_name):
    sde = SDES[sde_name]
    kw = {} if method in ("adaptive",) else {"steps": 1}
    if method == "ode":
        kw["solver"] = "euler"
    res = sample(
        sde,
        gm2().score_fn(sde),
        (64, 2),
        method=method,
        generator=torch.Generator().manual_seed(1),
        **kw,
    )
    assert torch.isfinite(res.x).all()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "sde"])
def test_generator_samples_are_chunk_independent(method):
    sde = VPSDE()
    fn = gm2().score_fn(sde)
    kw = kwargs(method, steps=5)
    if method == "adaptive":
        kw["error_norm"] = "per_sample"
    full = sample(
        sde, fn, (12, 2), method=method, generator=torch.Generator().manual_seed(3), **kw
    ).x
    g = torch.Generator().manual_seed(3)
    parts = [sample(sde, fn, (n, 2), method=method, generator=g, **kw).x for n in (5, 7)]
    torch.testing.assert_close(torch.cat(parts), full, rtol=1e-5, atol=1e-5)
    seeds = torch.arange(12) * 7919
    a = sample(sde, fn, (12, 2), method=method, seeds=seeds, **kw).x
    b = sample(sde, fn, (4, 2), method=method, seeds=seeds[8:], **kw).x
    torch.testing.assert_close(a[8:], b, rtol=1e-5, atol=1e-5)


def test_same_seed_same_samples_and_sde_method_reproducible():
    sde = VESDE()
    fn = gm2().score_fn(sde)
    for method in ("euler_maruyama", "sde"):
        a = sample(
            sde, fn, (8, 2), method=method, steps=10, generator=torch.Generator().manual_seed(4)
        ).x
        b = sample(
            sde, fn, (8, 2), method=method, steps=10, generator=torch.Generator().manual_seed(4)
        ).x
        c = sample(
            sde, fn, (8, 2), method=method, steps=10, generator=torch.Generator().manual_seed(5)
        ).x
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_keyed_noise_is_standard_normal():
    from scoresde.sampling import KeyedNoise

    z = KeyedNoise(torch.arange(2000), (50,), torch.float64, "cpu").normal()
    assert abs(float(z.mean())) < 0.01 and abs(float(z.var()) - 1) < 0.02
    assert abs(float((z**4).mean()) - 3) < 0.1
    corr = torch.corrcoef(z[:, :10].T) - torch.eye(10)
    assert corr.abs().max() < 0.1


@pytest.mark.parametrize("method", ["pc", "ode", "dpm_solver", "adaptive"])
def test_float64_in_float64_out(method):
    sde = SubVPSDE()
    res = sample(
        sde,
        gm2().to(torch.float64).score_fn(sde),
        (8, 2),
        method=method,
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(0),
        **kwargs(method),
    )
    assert res.x.dtype == torch.float64
    z = torch.randn(8, 2, dtype=torch.float64)
    assert (
        sample(sde, gm2().to(torch.float64).score_fn(sde), method="ddim", steps=3, x_init=z).x.dtype
        == torch.float64
    )


def test_project_hook_sees_every_update_and_x_init_t_start():
    sde = VPSDE()
    times = []

    def project(x, t):
        times.append(float(t[0]))
        return torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:]], 1)  # "inpaint" coordinate 0 with 0

    x0 = torch.randn(10, 2)
    res = sample(
        sde,
        gm2().score_fn(sde),
        method="pc",
        steps=5,
        x_init=x0,
        t_start=0.5,
        project=project,
        corrector_steps=2,
        return_trajectory=True,
    )
    assert (
        len(times) == 5 * (1 + 2) + 1
    )  # predictor + 2 corrector updates per step, final denoising
    assert times[0] < 0.5 and times[-1] == 0.0
    assert torch.all(res.x[:, 0] == 0)
    assert res.trajectory.shape == (7, 10, 2) and res.times[0] == 0.5


def test_score_errors_name_step_and_time():
    sde = VPSDE()

    def bad_shape(x, t):
        return x[:, :1]

    with pytest.raises(ScoreError, match=r"shape .* step 0 \(t=1\)"):
        sample(sde, bad_shape, (4, 2), method="euler_maruyama", steps=3)

    def nan_late(x, t):
        return torch.full_like(x, float("nan")) if float(t[0]) < 0.5 else -x

    with pytest.raises(ScoreError, match=r"non-finite .* step 2 \(t=0\.33"):
        sample(sde, nan_late, (4, 2), method="ddim", steps=3, time_grid="uniform")


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"method": "nope"}, r"method must be one of \['euler_maruyama'"),
        ({"method": "pc", "predictor": "rk"}, r"predictor must be one of \['euler_maruyama'"),
        ({"method": "pc", "corrector": "hmc"}, r"corrector must be one of \['langevin'"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"method": "pc", "snr": 0.0}, "snr must be a number > 0"),
        ({"method": "ode", "rtol": -1.0}, "rtol must be a number > 0"),
        ({"method": "adaptive", "rtol": 0}, "rtol must be a number > 0"),
        ({"method": "ddim", "order": 2}, r"unknown option\(s\) \['order'\] for method 'ddim'"),
        ({"method": "dpm_solver", "order": 4}, r"order must be one of \[1, 2, 3\]"),
        ({"method": "ode", "steps": 5, "solver": "dopri5"}, "steps fixes the grid"),
        ({"method": "sde", "solver": "rk4"}, r"solver must be one of \['euler'"),
        ({"method": "pc", "langevin_norm": "x"}, "langevin_norm"),
        ({"eps": 0}, "eps must be"),
        ({"method": "ddim", "time_grid": "cosine"}, "time_grid must be one of"),
    ],
)
def test_bad_input_raises_value_error(bad, match):
    sde = VPSDE()
    with pytest.raises(ValueError, match=match):
        sample(sde, gm2().score_fn(sde), (4, 2), **bad)


def test_t_start_without_x_init_and_shape_mismatch_rejected():
    sde = VPSDE()
    with pytest.raises(ValueError, match="x_init"):
        sample(sde, gm2().score_fn(sde), (4, 2), t_start=0.5)
    with pytest.raises(ValueError, match="does not match"):
        sample(sde, gm2().score_fn(sde), (4, 3), x_init=torch.zeros(4, 2))


def test_standalone_function_and_encode_nfe():
    sde = VESDE()
    fn = Counter(gm2().score_fn(sde))
    res = sample_dpm_solver(sde, fn, (8, 2), steps=6)
    assert res.nfe == 7 == fn.calls
    enc = encode(sde, fn, res.x, steps=4, solver="euler")
    assert enc.nfe == 4 and enc.x.shape == (8, 2)
