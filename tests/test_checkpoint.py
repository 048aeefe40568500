"""Checkpoints: atomic save, weights_only load with clear errors, resume == uninterrupted, NaN
stop."""

import json
import os

import pytest
import torch
from hydra import compose, initialize_config_module

from scoresde.io.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from scoresde.io.runs import load_run
from scoresde.training.ema import EMA
from scoresde.training.trainer import NonFiniteLossError, train

TINY = [
    "experiment=toy2d",
    "logger=none",
    "device=cpu",
    "model.hidden=32",
    "model.num_blocks=1",
    "model.embed_dim=16",
    "training.batch_size=64",
    "training.progress=false",
    "training.sample_every=0",
    "training.final_sample_n=0",
    "training.final_likelihood_n=0",
    "training.eval_every=0",
    "training.checkpoint_every=0",
    "training.snapshot_every=0",
    "training.log_every=10",
    "data.n=1000",
    "data.n_test=100",
    "training.plot=false",
]


def cfg_of(*overrides):
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        return compose("config", overrides=list(overrides))


def _losses(run_dir):
    rows = [
        json.loads(ln) for ln in (run_dir / "losses.jsonl").read_text().splitlines() if ln.strip()
    ]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    return [r["loss"] for r in rows]


def test_save_is_atomic_and_load_round_trips(tmp_path):
    state = {
        "format": FORMAT,
        "model": {"w": torch.arange(3.0)},
        "step": 7,
        "config": {"a": 1},
        "rng": {"torch": torch.get_rng_state()},
    }
    p = save_checkpoint(tmp_path / "c" / "last.pt", state)
    assert sorted(os.listdir(tmp_path / "c")) == ["last.pt"]  # no temp file left behind
    out = load_checkpoint(tmp_path / "c" / "last.pt")
    assert out["step"] == 7 and torch.equal(out["model"]["w"], torch.arange(3.0))
    # a run directory resolves to <dir>/checkpoints/last.pt
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", state)
    assert load_checkpoint(tmp_path / "run")["step"] == 7
    assert p.name == "last.pt"


def test_failed_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {}, "step": 1, "config": {}})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        save_checkpoint(path, {"model": {}, "step": 2, "config": {}, "bad": Unpicklable()})
    assert load_checkpoint(path)["step"] == 1 and os.listdir(tmp_path) == ["last.pt"]


def test_missing_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        load_checkpoint(tmp_path)
    good = save_checkpoint(
        tmp_path / "good.pt", {"model": {"w": torch.ones(1000)}, "step": 1, "config": {}}
    )
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="corrupt or unreadable checkpoint .*trunc.pt"):
        load_checkpoint(tmp_path / "trunc.pt")
    torch.save({"model": {}, "step": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="format None"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save(
        {"format": FORMAT, "model": {}, "step": 1, "config": {}, "obj": EMA}, tmp_path / "code.pt"
    )
    with pytest.raises(
        CheckpointError, match="corrupt or unreadable"
    ):  # weights_only refuses classes
        load_checkpoint(tmp_path / "code.pt")


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tmp_path):
    """Kill-and-resume: 20 steps straight vs 10 steps, a crash after logging 5 more, resume=auto.

    Dropout, label dropout (conditional model), periodic sampling/eval in between: all covered by
    the saved RNG states and the per-step seeded noise.
    """
    common = [
        *TINY,
        "model.dropout=0.2",
        "model.conditional=true",
        "training.label_dropout=0.3",
        "training.eval_every=5",
        "training.eval_n=32",
        "training.sample_every=5",
        "training.sample_n=8",
        "training.checkpoint_every=5",
        "training.log_every=3",
        "data=gmm8",
        "sampler=euler_maruyama",
        "sampler.steps=10",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    a = train(cfg_of(*common, "training.steps=20"), full)
    train(cfg_of(*common, "training.steps=10"), part)
    with open(part / "losses.jsonl", "a") as f:  # the killed run had logged beyond its checkpoint
        f.write("".join(json.dumps({"step": s, "loss": 123.0}) + "\n" for s in range(11, 16)))
    b = train(cfg_of(*common, "training.steps=20", "training.resume=auto"), part)
    assert b.step == 20 and len(_losses(part)) == 20
    assert _losses(part) == _losses(full) == a.losses  # bit-identical on CPU
    sa, sb = load_checkpoint(full), load_checkpoint(part)
    for k in sa["ema"]:
        assert torch.equal(sa["ema"][k], sb["ema"][k]), k


def test_load_run_gives_the_ema_model(tmp_path):
    train(cfg_of(*TINY, "training.steps=5", "training.ema_decay=0.5"), tmp_path)
    run = load_run(tmp_path)
    state = load_checkpoint(tmp_path)
    assert run.step == 5 and run.cfg.model.name == "mlp" and not run.model.training
    for k, v in run.model.state_dict().items():
        assert torch.equal(v, state["ema"][k])
    assert not torch.equal(state["ema"]["net.inp.weight"], state["model"]["net.inp.weight"])
    x, _ = run.dataset("test")[0]
    s = run.score_fn()(x[None], torch.full((1,), 0.5))
    assert s.shape == (1, 2) and torch.isfinite(s).all()
    raw = load_run(tmp_path / "checkpoints" / "last.pt", use_ema=False)
    assert torch.equal(raw.model.state_dict()["net.inp.weight"], state["model"]["net.inp.weight"])


def test_incompatible_checkpoint_for_resume_is_a_clear_error(tmp_path):
    train(cfg_of(*TINY, "training.steps=2"), tmp_path)
    with pytest.raises(CheckpointError, match="does not fit"):
        train(
            cfg_of(*TINY, "training.steps=4", "training.resume=auto", "model.hidden=16"), tmp_path
        )


def test_non_finite_loss_stops_naming_the_step_and_keeps_last_good_checkpoint(tmp_path):
    cfg = cfg_of(
        *TINY,
        "training.steps=200",
        "training.lr=1e12",
        "training.warmup=0",
        "training.grad_clip=0",
        "training.checkpoint_every=1",
        "training.log_every=1",
    )
    with pytest.raises(NonFiniteLossError, match=r"non-finite .* at step (\d+)") as err:
        train(cfg, tmp_path)
    import re

    bad = int(re.search(r"at step (\d+)", str(err.value)).group(1))
    assert "last good checkpoint" in str(err.value)
    state = load_checkpoint(tmp_path)
    assert state["step"] == bad - 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
