"""Explicit time grids (``timesteps``) and grids fitted to a model (``fit_timesteps``)."""

import itertools
import math

import numpy as np
import pytest
import torch

from scoresde import fit_timesteps, sample
from scoresde.oracle import GaussianMixture
from scoresde.sampling import time_grid
from scoresde.sde import VESDE, VPSDE


def ring():
    ang = torch.arange(4, dtype=torch.float64) * 2 * math.pi / 4
    means = torch.stack([1.5 * ang.cos(), 1.5 * ang.sin()], 1)
    return GaussianMixture(torch.ones(4), means, 0.2).to(torch.float32)


@pytest.mark.parametrize("method", ["unipc", "dpm_solver", "deis", "ddim", "euler_maruyama"])
def test_explicit_timesteps_reproduce_the_named_grid(method):
    sde, gm = VPSDE(), ring()
    grid = time_grid(sde, 1.0, 1e-3, 6, "logsnr")
    kw = {"generator": None, "seeds": torch.arange(64)}
    a = sample(
        sde, gm.score_fn(sde), (64, 2), method, steps=6, time_grid="logsnr", end_sigma=None, **kw
    )
    b = sample(sde, gm.score_fn(sde), (64, 2), method, timesteps=tuple(grid.tolist()), **kw)
    assert a.nfe == b.nfe
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    torch.testing.assert_close(b.times, grid)


def test_timesteps_bad_input():
    sde, gm = VPSDE(), ring()
    f = gm.score_fn(sde)
    with pytest.raises(ValueError, match="timesteps must be >= 2 positive, strictly decreasing"):
        sample(sde, f, (4, 2), "unipc", timesteps=(1.0, 0.5, 0.6))
    with pytest.raises(ValueError, match="timesteps must be"):
        sample(sde, f, (4, 2), "unipc", timesteps=(1.0,))
    with pytest.raises(ValueError, match="timesteps must be a sequence of numbers"):
        sample(sde, f, (4, 2), "unipc", timesteps="1.0 0.5")
    with pytest.raises(ValueError, match=r"steps must be None or len\(timesteps\) - 1 = 2"):
        sample(sde, f, (4, 2), "unipc", steps=5, timesteps=(1.0, 0.5, 0.01))
    with pytest.raises(ValueError, match="timesteps\\[0\\] must equal t_start"):
        sample(sde, f, (4, 2), "dpm_solver", timesteps=(0.9, 0.5, 0.01))
    with pytest.raises(ValueError, match="unknown option"):
        sample(sde, f, (4, 2), "adaptive", timesteps=(1.0, 0.5, 0.01))


def _endpoint_error(sde, gm, timesteps, seed):
    f = gm.score_fn(sde)
    g = lambda: torch.Generator().manual_seed(seed)
    ref = sample(sde, f, (512, 2), "ode", rtol=1e-6, atol=1e-6, generator=g()).x
    x = sample(sde, f, (512, 2), "unipc", timesteps=timesteps, generator=g()).x
    return float(((x - ref) ** 2).sum(1).mean())


@pytest.mark.parametrize("sde", [VPSDE(), VESDE()], ids=["vp", "ve"])
def test_fit_timesteps_beats_the_uniform_logsnr_grid_on_unseen_draws(sde):
    """Fit on draws from seed 0, judge on seed 1: the fitted 6-NFE grid must cut the endpoint
    error against a tight ODE solve well below the uniform-logSNR grid the fit starts from."""
    gm = ring()
    fit = fit_timesteps(
        sde, gm.score_fn(sde), (256, 2), "unipc", 6, seed=0, max_evals=300, starts=1
    )
    ts = fit.timesteps
    assert len(ts) == 6 and ts[0] == float(sde.T)
    assert all(b < a for a, b in itertools.pairwise(ts))
    # one start plus the continuation run, max_evals each (Powell may overshoot by a few)
    assert fit.loss < 0.5 * fit.initial_loss and fit.evaluations <= 2 * (300 + 40)
    lam = sde.log_snr(torch.tensor(fit.initial_timesteps, dtype=torch.float64))
    assert torch.allclose(lam.diff(), lam.diff().mean())  # the start: a uniform logSNR grid
    start = _endpoint_error(sde, gm, fit.initial_timesteps, 1)
    assert _endpoint_error(sde, gm, ts, 1) < 0.5 * start


def test_fit_timesteps_draw_sets_keeps_the_grid_that_scores_best_on_every_set():
    """draw_sets=2 fits seeds 0 and 1 alone and keeps the grid with the lower mean loss over
    both sets (one of the two single fits' grids, exactly)."""
    sde, gm = VPSDE(), ring()
    kw = {"max_evals": 60, "starts": 1}
    f = gm.score_fn(sde)
    single = [fit_timesteps(sde, f, (64, 2), "unipc", 5, seed=s, **kw) for s in (0, 1)]
    both = fit_timesteps(sde, f, (64, 2), "unipc", 5, seed=0, draw_sets=2, **kw)
    assert both.timesteps in [fit.timesteps for fit in single]
    assert both.evaluations == sum(fit.evaluations for fit in single) + 4
    assert both.initial_loss == pytest.approx(np.mean([fit.initial_loss for fit in single]))


def test_fit_timesteps_records_the_method_and_options_it_fitted():
    """sample(**fit.sample_kwargs) runs the method, order and grid that were fitted."""
    sde, gm = VPSDE(), ring()
    f = gm.score_fn(sde)
    fit = fit_timesteps(sde, f, (64, 2), "unipc", 7, seed=0, max_evals=30, starts=1, order=2)
    assert (fit.method, fit.options) == ("unipc", {"order": 2})
    kw = {"generator": None, "seeds": torch.arange(32)}
    a = sample(sde, f, (32, 2), **fit.sample_kwargs, **kw)
    b = sample(sde, f, (32, 2), "unipc", order=2, timesteps=fit.timesteps, **kw)
    c = sample(sde, f, (32, 2), "unipc", timesteps=fit.timesteps, **kw)  # order 3 (6 steps)
    torch.testing.assert_close(a.x, b.x, rtol=0, atol=0)
    assert not torch.equal(a.x, c.x)


def test_fit_timesteps_bad_input():
    sde, gm = VPSDE(), ring()
    f = gm.score_fn(sde)
    with pytest.raises(ValueError, match="has no time grid to fit"):
        fit_timesteps(sde, f, (8, 2), "adaptive", 5)
    with pytest.raises(ValueError, match="nfe"):
        fit_timesteps(sde, f, (8, 2), "unipc", 1)
    with pytest.raises(ValueError, match="min_step"):
        fit_timesteps(sde, f, (8, 2), "unipc", 5, min_step=1.0)
    with pytest.raises(ValueError, match="starts must be 1, 2 or 3"):
        fit_timesteps(sde, f, (8, 2), "unipc", 5, starts=4)
    with pytest.raises(ValueError, match="lambda_end_range"):
        fit_timesteps(sde, f, (8, 2), "unipc", 5, lambda_end_range=(3.0, 2.0))
    with pytest.raises(ValueError, match="method must be one of"):
        fit_timesteps(sde, f, (8, 2), "nope", 5)
    with pytest.raises(ValueError, match="draw_sets"):
        fit_timesteps(sde, f, (8, 2), "unipc", 5, draw_sets=0)
