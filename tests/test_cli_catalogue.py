"""Catalogue of bad inputs through the real command lines: exit code 2 and one `error:` line
that names the parameter or the path (issue 14, item 1).

Most cases run the entry points in this process (``main(argv)``, the code ``python -m`` runs;
a subprocess costs seconds of imports each); a few go through ``python -m`` to prove the path.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from scoresde import convert, evaluate, features, generate, train
from scoresde.io.checkpoint import save_checkpoint
from scoresde.io.runs import build_dataset, build_score_model
from scoresde.likelihood import __main__ as likelihood

COMMANDS = {
    "train": train.main,
    "generate": generate.main,
    "evaluate": evaluate.main,
    "features": features.main,
    "convert": convert.main,
}
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures", "score_sde_pytorch")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogue")
    cfg = {
        "sde": {"name": "vp", "N": 100},
        "model": {"name": "mlp", "hidden": 8, "num_blocks": 1, "embed_dim": 4},
        "data": {"name": "moons", "n": 200, "n_test": 50},
        "sampler": {"method": "euler_maruyama", "steps": 2},
    }
    info = dict(build_dataset(cfg["data"], "test").info)
    sd = build_score_model(cfg, info).state_dict()
    state = {"model": sd, "ema": sd, "step": 1, "config": cfg, "data_info": info}
    save_checkpoint(root / "run" / "checkpoints" / "last.pt", state)
    good = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    np.savez(root / "wrong_shape.npz", samples_model=np.zeros((20, 3), np.float32))
    np.savez(root / "nan.npz", samples_model=np.where(good > 1, np.nan, good))
    np.savez(root / "old_key.npz", samples=good)
    np.savez(root / "ints.npz", samples_model=np.zeros((20, 2), np.int64))
    np.savez(root / "other_key.npz", y=good)
    (root / "text.npz").write_text("not an npz\n")
    (root / "not_a_ckpt.pt").write_bytes(b"\x00garbage")
    paths = {"run": root / "run", "root": root, "fx": FIXTURES}
    return {k: str(v) for k, v in paths.items()}


def _f(files, name):
    return os.path.join(files["root"], name)


# (command, arguments, strings the error line must contain); {run} / {root} are filled in
CASES = [
    ("train", ["task=inpaint"], ["task=inpaint", "classifier, score"]),
    ("train", ["foo=1"], ["'foo'", "seed", "training"]),
    ("train", ["training.stepz=3"], ["'training.stepz'", "steps"]),
    ("train", ["sde=zz"], ["sde=zz", "subvp, ve, vp"]),
    ("train", ["model=nope"], ["model=nope", "mlp"]),
    ("train", ["data=nope"], ["data=nope", "digits"]),
    ("train", ["sampler=nope"], ["sampler=nope", "pc"]),
    ("train", ["logger=nope"], ["logger=nope", "none"]),
    ("train", ["seed=x"], ["seed", "'x'"]),
    ("train", ["threads=-1"], ["threads", "-1"]),
    ("train", ["device=cuda:3"], ["device=cuda:3", "device=cpu"]),
    ("train", ["sde=["], ["override"]),
    ("generate", [], ["ckpt"]),
    ("generate", ["ckpt={root}/missing_run"], ["missing_run"]),
    ("generate", ["ckpt={root}/not_a_ckpt.pt"], ["not_a_ckpt.pt"]),
    ("generate", ["ckpt={run}", "task=score"], ["task=score", "inpaint"]),
    ("generate", ["ckpt={run}", "+sde=ve"], ["'sde'", "valid keys"]),
    ("generate", ["ckpt={run}", "seed=x"], ["seed", "'x'"]),
    ("generate", ["ckpt={run}", "n=0"], ["n must be an integer >= 1", "0"]),
    ("generate", ["ckpt={run}", "n=-5"], ["n must be", "-5"]),
    ("generate", ["ckpt={run}", "batch_size=0"], ["batch_size", "0"]),
    ("generate", ["ckpt={run}", "threads=-1"], ["threads", "-1"]),
    ("generate", ["ckpt={run}", "threads=two"], ["threads", "'two'"]),
    ("generate", ["ckpt={run}", "device=cuda"], ["device=cuda"]),
    ("generate", ["ckpt={run}", "task=inpaint", "task.typo=1"], ["'task.typo'", "mask"]),
    ("generate", ["ckpt={run}", "task=inpaint", "task.mask=nomask"], ["task.mask", "nomask"]),
    ("generate", ["ckpt={run}", "task=inpaint", "task.split=val"], ["task.split", "'val'"]),
    ("generate", ["ckpt={run}", "task=class"], ["task=class", "class-conditional"]),
    ("generate", ["ckpt={run}", "task=class", "task.w=abc"], ["task.w", "'abc'"]),
    ("generate", ["ckpt={run}", "task=sdedit"], ["task.guide"]),
    ("generate", ["ckpt={run}", "task=sdedit", "task.guide={root}/no.png"], ["no.png"]),
    ("generate", ["ckpt={run}", "task=sdedit", "task.guide={root}/text.npz"], ["text.npz"]),
    ("generate", ["ckpt={run}", "task=colorize"], ["task=colorize", "RGB"]),
    ("generate", ["ckpt={run}", "sampler=nope"], ["sampler=nope", "ode"]),
    ("evaluate", [], ["exactly one of ckpt"]),
    ("evaluate", ["samples={root}/none.npz", "data=moons"], ["none.npz"]),
    ("evaluate", ["samples={root}/text.npz", "data=moons"], ["text.npz", "not an .npz"]),
    ("evaluate", ["samples={root}/wrong_shape.npz", "data=moons"], ["wrong_shape.npz", "[N, 2]"]),
    ("evaluate", ["samples={root}/nan.npz", "data=moons"], ["nan.npz", "NaN"]),
    ("evaluate", ["samples={root}/old_key.npz", "data=moons"], ["old_key.npz", "samples_model"]),
    ("evaluate", ["samples={root}/ints.npz", "data=moons"], ["ints.npz", "float"]),
    ("evaluate", ["samples={root}/other_key.npz", "data=moons"], ["other_key.npz", "['y']"]),
    ("evaluate", ["ckpt={run}", "num_samples=0"], ["num_samples", "0"]),
    ("evaluate", ["ckpt={run}", "num_samples=-5"], ["num_samples", "-5"]),
    ("evaluate", ["ckpt={run}", "num_samples=many"], ["num_samples", "'many'"]),
    ("evaluate", ["ckpt={run}", "batch_size=0"], ["batch_size", "0"]),
    ("evaluate", ["ckpt={run}", "seeds=[]"], ["seeds"]),
    ("evaluate", ["ckpt={run}", "split=val"], ["split", "'val'"]),
    ("evaluate", ["ckpt={run}", "metrics=[foo]"], ["metrics", "foo"]),
    ("evaluate", ["ckpt={run}", "+sde=ve"], ["'sde'", "valid keys"]),
    ("evaluate", ["samples={root}/nan.npz", "data=nope"], ["data=nope", "moons"]),
    ("evaluate", ["ckpt={run}", "device=cuda:1"], ["device=cuda:1"]),
    ("features", ["dataset=mnist"], ["dataset", "digits", "fashion"]),
    ("features", ["epochs=0"], ["epochs", "0"]),
    ("features", ["lr=abc"], ["lr", "'abc'"]),
    ("features", ["threads=-1"], ["threads", "-1"]),
    ("features", ["foo=1"], ["'foo'", "dataset"]),
    ("convert", [], ["config"]),
    ("convert", ["config=ve/cifar10_ncsnpp_continuous"], ["checkpoint"]),
    ("convert", ["checkpoint={fx}/no.pth", "config=ve/cifar10_ncsnpp_continuous"], ["no.pth"]),
    (
        "convert",
        ["checkpoint={fx}/ve_ncsnpp_continuous.pth", "config=ve/nope"],
        ["config", "ve/nope"],
    ),
    (
        "convert",
        ["checkpoint={fx}/README.md", "config=ve/cifar10_ncsnpp_continuous"],
        ["README.md"],
    ),
    (
        "convert",
        ["checkpoint={root}/not_a_ckpt.pt", "config=ve/cifar10_ncsnpp_continuous"],
        ["not_a_ckpt.pt"],
    ),
    (
        "convert",
        ["checkpoint={fx}/ve_ncsnpp_continuous.pth", "config=vp/cifar10_ddpmpp_continuous"],
        ["ve_ncsnpp_continuous.pth", "missing key"],
    ),
    (
        "convert",
        ["checkpoint={fx}/ve_ncsnpp_continuous.pth", "config={root}/none.json"],
        ["none.json"],
    ),
    ("convert", ["config=x", "foo=1"], ["'foo'", "checkpoint, config, out"]),
]


def _fill(args, files):
    return [a.format(**files) for a in args]


@pytest.mark.parametrize(("cmd", "args", "names"), CASES, ids=lambda v: str(v))
def test_bad_input_exits_2_with_one_line_naming_the_parameter(
    cmd, args, names, files, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SCORESDE_DEBUG", "0")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)
    head = ["logger=none"] if cmd == "train" else []  # first, so a case's own logger= wins
    argv = [*head, *_fill(args, files), f"hydra.run.dir={tmp_path / 'out'}"]
    GlobalHydra.instance().clear()
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as e:
            COMMANDS[cmd](argv)
    finally:
        torch.set_num_threads(threads)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2, err
    assert err and err[-1].startswith("error: "), err
    assert not any("Traceback" in ln or "HYDRA_FULL_ERROR" in ln for ln in err), err
    for n in names:
        assert n.format(**files) in err[-1], (n, err[-1])


LIKELIHOOD_CASES = [
    (["trace=hutch"], ["trace"]),
    (["split=val"], ["split"]),
    (["batch_size=0"], ["batch_size"]),
    (["eps=2.0"], ["eps"]),
    ([], ["ckpt"]),
    (["ckpt={root}/missing_run"], ["missing_run"]),
]


@pytest.mark.parametrize(("args", "names"), LIKELIHOOD_CASES, ids=lambda v: str(v))
def test_likelihood_bad_input_exits_2_naming_the_parameter(
    args, names, files, tmp_path, monkeypatch, capsys
):
    argv = _fill(args, files)
    if not any(a.startswith("ckpt=") for a in argv) and names != ["ckpt"]:
        argv.append(f"ckpt={files['run']}")
    monkeypatch.setattr(sys, "argv", ["x", *argv, f"hydra.run.dir={tmp_path / 'o'}"])
    GlobalHydra.instance().clear()
    try:
        with pytest.raises(SystemExit) as e:
            likelihood.main()
    finally:
        GlobalHydra.instance().clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("error: "), err
    for n in names:
        assert n.format(**files) in err[-1], (n, err[-1])


def test_through_python_dash_m_with_and_without_the_debug_switch(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "SCORESDE_DEBUG": "0"}
    cmd = [sys.executable, "-m", "scoresde.evaluate", "num_samples=0", "ckpt=x"]
    cmd.append(f"hydra.run.dir={tmp_path}")
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2 and p.stderr.strip().splitlines() == [
        "error: num_samples must be null (all) or an integer >= 1, got 0"
    ], p.stderr
    env["SCORESDE_DEBUG"] = "1"
    p = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and "Traceback (most recent call last):" in lines
    assert lines[-1].startswith("error: num_samples")
