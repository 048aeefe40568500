"""``python -m scoresde.likelihood`` end to end on tiny checkpoints.

Results, resume, errors, --help."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from scoresde.evaluation.likelihood import LikelihoodCLIError, evaluate
from scoresde.evaluation.likelihood_records import batch_seed as _batch_seed
from scoresde.io.checkpoint import save_checkpoint
from scoresde.io.runs import build_dataset, build_score_model, load_run
from scoresde.likelihood import bits_per_dim

FAST = ["rtol=1e-3", "atol=1e-3", "eps=1e-3", "threads=1", "progress=false"]


def _make_run(root: Path, data: str) -> Path:
    cfg = {
        "sde": {"name": "vp"},
        "model": {
            "name": "mlp",
            "hidden": 16,
            "num_blocks": 1,
            "embed_dim": 8,
            "parameterization": "eps",
        },
        "data": {"name": data},
    }
    info = dict(build_dataset(cfg["data"], "test").info)
    model = build_score_model(cfg, info)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # the net starts at output 0; perturb it so the ODE is not trivial
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    sd = model.state_dict()
    save_checkpoint(
        root / "checkpoints" / "last.pt",
        {
            "model": sd,
            "ema": sd,
            "optimizer": {},
            "step": 7,
            "rng": {},
            "config": cfg,
            "data_info": info,
        },
    )
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    return {
        "digits": _make_run(base / "digits", "digits"),
        "moons": _make_run(base / "moons", "moons"),
    }


def _cfg(overrides):
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        return compose(config_name="likelihood", overrides=list(overrides))


def test_cli_reports_bits_per_dim_matching_the_library(runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    _main_in_process(
        [
            f"ckpt={runs['digits']}",
            "max_samples=3",
            "batch_size=2",
            "repeats=2",
            *FAST,
            f"hydra.run.dir={out}",
        ],
        monkeypatch,
    )
    stdout = capsys.readouterr().out
    assert "bits/dim:" in stdout and "mean NFE" in stdout
    rec = json.loads((out / "likelihood.json").read_text())
    assert rec["complete"] and rec["unit"] == "bits/dim" and rec["levels"] == 17
    assert [b["n"] for b in rec["batches"]] == [2, 1]
    assert {"torch", "scoresde", "python"} <= set(rec["versions"])
    assert rec["settings"]["step"] == 7 and rec["result"]["n"] == 3
    # the first batch recomputed through the library with the same per-batch generator
    run = load_run(runs["digits"])
    x = torch.stack([run.dataset("test")[i][0] for i in range(2)])
    with torch.no_grad():
        ref = bits_per_dim(
            run.sde,
            run.model,
            x,
            levels=17,
            data_range=(-1, 1),
            repeats=2,
            generator=torch.Generator().manual_seed(_batch_seed(0, 0)),
            rtol=1e-3,
            atol=1e-3,
            eps=1e-3,
        )
    assert rec["batches"][0]["values"] == pytest.approx(ref.per_sample.tolist(), rel=1e-5)


class _Killed(Exception):
    pass


def test_killed_run_resumes_to_the_numbers_of_an_uninterrupted_run(runs, tmp_path):
    common = [f"ckpt={runs['moons']}", "max_samples=8", "batch_size=2", "trace=gaussian", *FAST]
    full = evaluate(_cfg(common), tmp_path / "full")
    assert full["complete"] and full["unit"] == "nats" and len(full["batches"]) == 4

    out = tmp_path / "resumed"
    cfg = _cfg(common)

    def kill_after_two(metrics, step):  # simulate a kill after the second batch was written
        if step == 1:
            raise _Killed

    with pytest.raises(_Killed):
        evaluate(cfg, out, log=kill_after_two)
    partial = json.loads((out / "likelihood.json").read_text())
    assert not partial["complete"] and [b["index"] for b in partial["batches"]] == [0, 1]

    step1 = evaluate(_cfg(common + ["max_batches=1"]), out)  # one more batch, still partial
    assert [b["index"] for b in step1["batches"]] == [0, 1, 2] and not step1["complete"]
    done = evaluate(cfg, out)
    assert done["complete"]
    assert [b["values"] for b in done["batches"]] == [b["values"] for b in full["batches"]]
    assert done["result"]["mean"] == pytest.approx(full["result"]["mean"], rel=1e-12)

    # resume=PATH continues from another run's file into a fresh output dir
    again = evaluate(_cfg(common + [f"resume={out / 'likelihood.json'}"]), tmp_path / "copy")
    assert again["batches"] == done["batches"]


def test_resume_with_other_settings_is_refused(runs, tmp_path):
    common = [f"ckpt={runs['moons']}", "max_samples=2", "batch_size=2", *FAST]
    evaluate(_cfg(common), tmp_path)
    with pytest.raises(LikelihoodCLIError, match="different settings.*rtol"):
        evaluate(_cfg(common + ["rtol=1e-4"]), tmp_path)
    fresh = evaluate(_cfg(common + ["rtol=1e-4", "resume=false"]), tmp_path)
    assert fresh["settings"]["rtol"] == 1e-4


def test_bad_checkpoints_and_options_give_clear_errors(runs, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(LikelihoodCLIError, match="corrupt or unreadable"):
        evaluate(_cfg([f"ckpt={junk}", *FAST]), tmp_path / "a")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(LikelihoodCLIError, match="format"):
        evaluate(_cfg([f"ckpt={other}", *FAST]), tmp_path / "b")
    # weights that do not fit the model the config describes
    state = torch.load(runs["moons"] / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["model"]["hidden"] = 8
    save_checkpoint(tmp_path / "misfit.pt", state)
    with pytest.raises(LikelihoodCLIError, match="do not fit"):
        evaluate(_cfg([f"ckpt={tmp_path / 'misfit.pt'}", *FAST]), tmp_path / "c")
    for bad, key in (
        ("trace=hutch", "trace"), ("eps=2.0", "eps"), ("batch_size=0", "batch_size"),
        ("nodes=16", "nodes"), ("nodes=1", "nodes"), ("nodes=true", "nodes"),
    ):  # fmt: skip
        with pytest.raises(LikelihoodCLIError, match=key):
            evaluate(_cfg([f"ckpt={runs['moons']}", *FAST, bad]), tmp_path / "d")


def _main_in_process(args, monkeypatch):
    """Run the Hydra entry point in this process (a subprocess costs seconds of imports)."""
    from hydra.core.global_hydra import GlobalHydra

    from scoresde.likelihood.__main__ import main

    monkeypatch.setattr(sys, "argv", ["scoresde.likelihood", *args])
    GlobalHydra.instance().clear()
    try:
        main()
    finally:
        GlobalHydra.instance().clear()


def test_missing_checkpoint_exits_nonzero_without_traceback(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as e:
        _main_in_process(
            [f"ckpt={tmp_path / 'nope'}", f"hydra.run.dir={tmp_path / 'o'}"], monkeypatch
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: cannot load checkpoint" in err and "does not exist" in err
    assert "Traceback" not in err


def test_help_describes_every_option(monkeypatch, capsys):
    try:
        _main_in_process(["--help"], monkeypatch)
    except SystemExit as e:
        assert e.code in (0, None)
    text = capsys.readouterr().out
    assert "Usage: python -m scoresde.likelihood" in text
    documented = set()
    for line in text.split("== Config ==")[0].splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            head = line.strip().split("  ")[0]
            documented |= {k.strip() for k in head.split(",")}
    assert set(OmegaConf.to_container(_cfg([]))) <= documented


def test_bound_is_reported_beside_the_ode_value(runs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    args = [f"ckpt={runs['digits']}", "max_samples=3", "batch_size=2", "bound=true"]
    _main_in_process([*args, "bound_samples=8", *FAST, f"hydra.run.dir={out}"], monkeypatch)
    stdout = capsys.readouterr().out
    assert "bits/dim:" in stdout and "bound (continuous):" in stdout and "ODE:" in stdout
    rec = json.loads((out / "likelihood.json").read_text())
    b = rec["result"]["bound"]
    assert rec["settings"]["bound"] is True and b["stderr"] > 0 and b["monte_carlo_stderr"] > 0
    assert all(len(x["bound_values"]) == x["n"] for x in rec["batches"])
    # vector data: the bound in nats, and the discrete bound is refused for it
    vec = evaluate(
        _cfg([f"ckpt={runs['moons']}", "max_samples=4", "bound=continuous", *FAST]), tmp_path / "v"
    )
    assert vec["unit"] == "nats" and math.isfinite(vec["result"]["bound"]["mean"])
    with pytest.raises(LikelihoodCLIError, match="ddpm needs discrete data"):
        evaluate(_cfg([f"ckpt={runs['moons']}", "bound=ddpm", *FAST]), tmp_path / "w")
    with pytest.raises(LikelihoodCLIError, match="bound must be one of"):
        evaluate(_cfg([f"ckpt={runs['moons']}", "bound=vlb", *FAST]), tmp_path / "w")


def test_a_kill_mid_batch_then_rerun_writes_the_identical_file(runs, tmp_path, monkeypatch):
    import scoresde.evaluation.likelihood as ev

    common = [
        f"ckpt={runs['moons']}",
        "max_samples=6",
        "batch_size=2",
        "trace=resampled",
        "probes=2",
        *FAST,
    ]
    evaluate(_cfg(common), tmp_path / "full")
    real, calls = ev.log_likelihood, []

    def dies_in_the_third_batch(*a, **k):  # a kill while batch 2 is being computed
        calls.append(1)
        if len(calls) == 3:
            raise _Killed
        return real(*a, **k)

    monkeypatch.setattr(ev, "log_likelihood", dies_in_the_third_batch)
    with pytest.raises(_Killed):
        evaluate(_cfg(common), tmp_path / "killed")
    monkeypatch.setattr(ev, "log_likelihood", real)
    partial = json.loads((tmp_path / "killed" / "likelihood.json").read_text())
    assert [b["index"] for b in partial["batches"]] == [0, 1] and not partial["complete"]
    evaluate(_cfg(common), tmp_path / "killed")
    full = (tmp_path / "full" / "likelihood.json").read_bytes()
    assert (tmp_path / "killed" / "likelihood.json").read_bytes() == full


@pytest.mark.parametrize(
    "change,keys",
    [
        (["trace=exact"], "trace"),
        (["rtol=1e-4", "split=train"], "rtol, split"),
        (["bound=true"], "bound"),
    ],
)
def test_resume_with_a_different_setting_is_refused_listing_the_keys(runs, tmp_path, change, keys):
    common = [f"ckpt={runs['moons']}", "max_samples=2", "batch_size=2", *FAST]
    evaluate(_cfg(common), tmp_path)
    with pytest.raises(LikelihoodCLIError, match=f"different settings \\({keys}\\)"):
        evaluate(_cfg(common + change), tmp_path)


def test_resume_from_another_checkpoint_is_refused(runs, tmp_path):
    evaluate(_cfg([f"ckpt={runs['moons']}", "max_samples=2", *FAST]), tmp_path)
    other = tmp_path / "other_run"
    state = torch.load(runs["moons"] / "checkpoints" / "last.pt", weights_only=True)
    save_checkpoint(other / "checkpoints" / "last.pt", state)
    with pytest.raises(LikelihoodCLIError, match="different settings \\(checkpoint\\)"):
        evaluate(_cfg([f"ckpt={other}", "max_samples=2", *FAST]), tmp_path)


def test_torchrun_two_processes_shard_batches_and_equal_one_process(runs, tmp_path):
    import os
    import subprocess

    common = [
        f"ckpt={runs['moons']}",
        "max_samples=7",
        "batch_size=2",
        "trace=resampled",
        "probes=2",
        *FAST,
    ]
    one = evaluate(_cfg(common), tmp_path / "one")
    out = tmp_path / "two"
    torchrun = "-m torch.distributed.run --standalone --nproc_per_node=2 -m scoresde.likelihood"
    cmd = [sys.executable, *torchrun.split(), *common, f"hydra.run.dir={out}"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    for _attempt in range(2):  # a free-port race under a loaded machine: retry once
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
        if res.returncode == 0:
            break
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("NLL:") == 1  # rank 0 alone reports
    two = json.loads((out / "likelihood.json").read_text())
    assert two["complete"] and [b["index"] for b in two["batches"]] == [0, 1, 2, 3]
    assert [b["values"] for b in two["batches"]] == [b["values"] for b in one["batches"]]


def test_cli_accepts_the_hutchpp_trace(runs, tmp_path):
    args = [f"ckpt={runs['moons']}", "max_samples=4", "batch_size=4", "trace=hutchpp", *FAST]
    cfg = _cfg(args)
    rec = evaluate(cfg, tmp_path / "h")
    assert rec["complete"] and len(rec["batches"][0]["values"]) == 4
    assert rec["settings"]["nodes"] is None  # the trace's default
    assert rec["settings"]["method"] == "rk45"  # method=null, recorded as what it resolves to
    nine = evaluate(_cfg([*args, "nodes=9"]), tmp_path / "h9")
    assert nine["settings"]["nodes"] == 9
    assert nine["batches"][0]["values"] != rec["batches"][0]["values"]
