"""Typed training configs (one source of defaults, unknown keys refused), validation before the
first step, config drift refused on resume, and the EMA warm-up."""

import json
import math

import pytest
import torch
from omegaconf import OmegaConf
from test_train import TINY, cfg_of  # the tiny toy-2D run and the compose helper

from scoresde.io.checkpoint import CheckpointError
from scoresde.training.config import TrainingConfig, training_options
from scoresde.training.ema import EMA
from scoresde.training.state import MAY_CHANGE_ON_RESUME
from scoresde.training.trainer import train


# ------------------------------------------------------------------ one source of defaults
def test_the_default_preset_is_the_schema():
    """conf/training/default.yaml repeats no default: composing it gives TrainingConfig()."""
    composed = OmegaConf.to_container(cfg_of().training)
    assert composed == OmegaConf.to_container(OmegaConf.structured(TrainingConfig))
    assert cfg_of("task=classifier").task.steps == 2000  # the task schema's default


def test_unknown_keys_and_bad_types_name_the_key():
    with pytest.raises(Exception, match="stepz"):
        cfg_of("training.stepz=3")
    with pytest.raises(Exception, match="steps"):
        cfg_of("training.steps=abc")
    with pytest.raises(Exception, match="tracee"):
        cfg_of("training.likelihood.tracee=exact")
    # a config built by hand goes through the same schema
    with pytest.raises(ValueError, match=r"training\.stepz .*valid keys: \[.*'steps'"):
        training_options({"stepz": 3})
    with pytest.raises(ValueError, match=r"training\.likelihood\.tracee .*'trace'"):
        training_options({"likelihood": {"tracee": "exact"}})


@pytest.mark.parametrize("key, value", [("weighting", "likelihood"), ("importance_sampling", True)])
def test_dsm_only_options_with_another_loss_are_errors_not_dropped(tmp_path, key, value):
    cfg = cfg_of(*TINY, "training.steps=1", "training.loss=ddpm", f"training.{key}={value}")
    with pytest.raises(ValueError, match=rf"training\.{key} is an option of training\.loss=dsm"):
        train(cfg, tmp_path)
    # left unset, the loss's own defaults apply: ddpm runs
    res = train(cfg_of(*TINY, "training.steps=2", "training.loss=ddpm"), tmp_path / "ok")
    assert res.step == 2 and all(math.isfinite(v) for v in res.losses)


# ------------------------------------------------------------------ validation up front
@pytest.mark.parametrize(
    "overrides, match",
    [
        (["training.sample_every=5", "sampler.steps=0"], r"sampler: .*steps"),
        (["training.final_sample_n=4", "+sampler.snrr=0.1"], r"unknown option\(s\) \['snrr'\]"),
        (["training.final_likelihood_n=4", "training.likelihood.trace=foo"], "trace must be one"),
        (["training.likelihood_every=5", "training.likelihood.rtol=-1"], "rtol must be"),
        (["training.eval_every=5", "training.eval_n=0"], "training.eval_n must be an integer"),
    ],
)
def test_options_used_later_are_checked_before_the_first_step(tmp_path, overrides, match):
    cfg = cfg_of(*TINY, "training.steps=20", *overrides)
    with pytest.raises(ValueError, match=match):
        train(cfg, tmp_path)
    assert not (tmp_path / "losses.jsonl").exists()  # no step ran, nothing was written


# ------------------------------------------------------------------ config drift on resume
def test_resume_with_a_different_model_sde_data_or_loss_is_refused_naming_the_keys(tmp_path):
    train(cfg_of(*TINY, "training.steps=2", "training.checkpoint_every=2"), tmp_path)
    for override, key in [
        ("sde=ve", "sde.name"),
        ("sde.beta_max=10", "sde.beta_max"),
        ("data=moons", "data.name"),
        ("training.lr=1e-4", "training.lr"),
        ("model.parameterization=score", "model.parameterization"),
        ("seed=3", "seed"),
    ]:
        cfg = cfg_of(*TINY, "training.steps=4", "training.resume=auto", override)
        with pytest.raises(CheckpointError, match=rf"different .*{key} \(checkpoint"):
            train(cfg, tmp_path)
    # what may change does: more steps, other cadences and evaluation sizes
    assert "training.steps" in MAY_CHANGE_ON_RESUME
    cfg = cfg_of(*TINY, "training.steps=4", "training.resume=auto", "training.log_every=1")
    assert train(cfg, tmp_path).step == 4


# ------------------------------------------------------------------ EMA warm-up
def test_ema_warmup_follows_its_closed_form():
    """After n updates towards a constant 1 from 0, the EMA is 1 - prod_k d_k with
    d_k = min(decay, (1 + k) / (10 + k)); without warm-up 1 - decay^n."""
    for warmup in (True, False):
        m = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(m.weight)
        ema = EMA(m, decay=0.999, warmup=warmup)
        with torch.no_grad():
            m.weight.fill_(1.0)
        for _ in range(300):
            ema.update(m)
        d = [min(0.999, (1 + k) / (10 + k)) if warmup else 0.999 for k in range(300)]
        left = math.prod(d)
        got = float(ema.model.weight)
        assert abs(got - (1 - left)) < 1e-6, (warmup, got, left)
    # 9! n! / (n + 9)! at n = 300: the initial weights are forgotten
    assert math.factorial(9) * math.factorial(300) / math.factorial(309) < 1e-15


def test_short_run_ema_is_not_worse_than_its_raw_weights(tmp_path):
    """200 steps: with warm-up the EMA's held-out loss is close to the raw weights'; without it
    the EMA (still ~82% the random initial weights) is far worse."""
    common = [*TINY, "training.steps=201", "training.eval_every=200", "training.eval_n=200"]
    out = {}
    for warm in ("true", "false"):
        run = tmp_path / warm
        train(cfg_of(*common, f"training.ema_warmup={warm}"), run)
        rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
        ev = next(r for r in rows if "eval/ema_loss" in r)
        out[warm] = (ev["eval/ema_loss"], ev["eval/loss"])
    ema, raw = out["true"]
    assert ema < 1.1 * raw, out
    ema_cold, raw_cold = out["false"]
    assert ema_cold > 1.3 * raw_cold, out


def test_drift_check_tolerates_schema_growth_but_not_new_model_arguments(tmp_path):
    from scoresde.training.state import check_config_drift

    saved = {"seed": 0, "model": {"hidden": 32}, "training": {"lr": 1e-3}}
    grown = {"seed": 0, "model": {"hidden": 32}, "training": {"lr": 1e-3, "ema_warmup": True}}
    check_config_drift(saved, grown, tmp_path)  # a key the older schema did not have
    with pytest.raises(CheckpointError, match=r"model\.dropout \(checkpoint: '<unset>'"):
        check_config_drift(saved, {**grown, "model": {"hidden": 32, "dropout": 0.1}}, tmp_path)
