"""The sampler registry: configs against the options dataclasses, one meaning per option name,
live METHODS / predictor lists, register_sampler from outside the package, bad input."""

import dataclasses
import pathlib
import typing

import pytest
import torch
import yaml

import scoresde
from scoresde.oracle import GaussianMixture
from scoresde.sampling import (
    METHODS,
    PREDICTOR_NAMES,
    GridMethod,
    GridOptions,
    get_sampler,
    grid_for,
    method_options,
    register_sampler,
    run_grid,
    sample,
)
from scoresde.sampling.predictors import PREDICTORS, Predictor
from scoresde.sampling.registry import _REGISTRY
from scoresde.sde import VPSDE

CONF = pathlib.Path(__file__).resolve().parents[1] / "conf" / "sampler"


def gm():
    return GaussianMixture(torch.ones(2), torch.tensor([[1.0, 0.0], [-1.0, 0.0]]), 0.3)


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_sampler_config_matches_its_options_dataclass(path):
    cfg = yaml.safe_load(path.read_text())
    method = cfg.pop("method")
    assert method == path.stem, "conf/sampler/<name>.yaml must configure method <name>"
    opts = method_options(method, **cfg)
    assert isinstance(opts, get_sampler(method).options)
    for key, value in cfg.items():  # every key reaches the dataclass (or is a sample() keyword)
        if hasattr(opts, key) and value is not None:
            assert getattr(opts, key) == value, key


def test_every_method_has_a_config():
    assert {p.stem for p in CONF.glob("*.yaml")} >= set(METHODS)


def test_one_meaning_per_option_name():
    """The same option name has the same type in every method's dataclass (None = "default" aside:
    ``corrector`` may not be a string for one method and a bool for another)."""
    seen = {}
    for method in METHODS:
        hints = typing.get_type_hints(get_sampler(method).options)
        for f in dataclasses.fields(get_sampler(method).options):
            t = set(typing.get_args(hints[f.name]) or (hints[f.name],)) - {type(None)}
            assert seen.setdefault(f.name, (t, method))[0] == t, (f.name, method, seen[f.name])


def test_unknown_option_names_method_and_lists_options():
    with pytest.raises(ValueError, match=r"\['corrector'\] for method 'unipc'.*'unic'"):
        method_options("unipc", corrector=True)
    with pytest.raises(ValueError, match=r"method must be one of \['euler_maruyama'"):
        method_options("nope")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        method_options("pc", steps="adaptive")
    with pytest.raises(ValueError, match="eps must be"):
        method_options("pc", eps=-1.0)


class _HalfwayOptions(GridOptions):
    pass


_HalfwayOptions = dataclasses.dataclass(frozen=True)(_HalfwayOptions)


class _DDIMLike(GridMethod):
    """A user's method: the deterministic DDIM step, written outside the package."""

    name = "user"

    def step(self, ctx, i, x, t, s):
        m_s, std_s = (float(v) for v in ctx.sde.marginal_coeffs(s))
        m_t, std_t = (float(v) for v in ctx.sde.marginal_coeffs(t))
        x0 = ctx.denoised(x, t, i)
        return m_s * x0 + (std_s / std_t) * (x - m_t * x0)


def _run_user(ctx, x, opts, t_start, eps):
    return run_grid(ctx, x, grid_for(ctx, opts, t_start, eps), _DDIMLike())


def test_register_sampler_from_outside():
    sde = VPSDE()
    spec = scoresde.register_sampler("user_ddim", _HalfwayOptions, _run_user, stochastic=False)
    assert "user_ddim" in METHODS and "user_ddim" in scoresde.METHODS
    assert spec.name == "user_ddim"
    a = sample(
        sde,
        gm().score_fn(sde),
        (16, 2),
        method="user_ddim",
        steps=7,
        time_grid="logsnr",
        generator=torch.Generator().manual_seed(0),
    )
    b = sample(
        sde,
        gm().score_fn(sde),
        (16, 2),
        method="ddim",
        steps=7,
        time_grid="logsnr",
        generator=torch.Generator().manual_seed(0),
    )
    torch.testing.assert_close(a.x, b.x, rtol=1e-4, atol=1e-4)
    assert a.nfe == 8
    with pytest.raises(ValueError, match="already registered"):
        register_sampler("user_ddim", _HalfwayOptions, _run_user, stochastic=False)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['eta'\] for method 'user_ddim'"):
        sample(sde, gm().score_fn(sde), (4, 2), method="user_ddim", eta=0.5)
    with pytest.raises(TypeError, match="SamplerOptions subclass"):
        register_sampler("user_bad", dict, _run_user, stochastic=False)
    del _REGISTRY["user_ddim"]
    assert "user_ddim" not in METHODS


def test_predictor_registry_is_live():
    class Zero(Predictor):
        name = "zero_test"

        def step(self, ctx, i, x, t, s):
            ctx.score(x, ctx.tvec(t, x), i)
            return x

    PREDICTORS["zero_test"] = Zero
    try:
        assert "zero_test" in PREDICTOR_NAMES
        sde = VPSDE()
        res = sample(sde, gm().score_fn(sde), (4, 2), method="pc", steps=3, predictor="zero_test")
        assert res.nfe == 3 + 3 + 1
    finally:
        del PREDICTORS["zero_test"]
    assert "zero_test" not in PREDICTOR_NAMES


def test_capabilities_are_enforced():
    sde = VPSDE()
    assert not get_sampler("ode").supports_project
    with pytest.raises(ValueError, match="does not support project"):
        sample(sde, gm().score_fn(sde), (4, 2), method="ode", project=lambda x, t: x)
    assert get_sampler("pc").stochastic and get_sampler("pc").chunk_independent
    assert not get_sampler("sde").chunk_independent
