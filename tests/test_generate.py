"""python -m scoresde.generate end to end on tiny checkpoints made by the training code."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from scoresde.generation import generate
from scoresde.io.checkpoint import load_checkpoint, save_checkpoint
from scoresde.io.runs import build_score_model

TRAIN = [
    "data=gmm8",
    "data.n=512",
    "data.n_test=64",
    "model=mlp",
    "model.hidden=16",
    "model.num_blocks=1",
    "model.embed_dim=8",
    "logger=none",
    "device=cpu",
    "training.steps=5",
    "training.batch_size=32",
    "training.progress=false",
    "training.sample_every=0",
    "training.eval_every=0",
    "training.final_sample_n=0",
    "training.final_likelihood_n=0",
    "training.likelihood_every=0",
    "training.checkpoint_every=0",
    "training.snapshot_every=0",
    "training.log_every=0",
]
FAST = ["sampler=pc", "sampler.steps=8", "progress=false"]


def _compose(name, overrides):
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        return compose(config_name=name, overrides=overrides)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from scoresde.train import run

    root = tmp_path_factory.mktemp("runs")
    cond = root / "cond"
    run(_compose("config", [*TRAIN, "model.conditional=true", "training.label_dropout=0.2"]), cond)
    clf = root / "clf"
    run(
        _compose(
            "config",
            [
                *TRAIN,
                "task=classifier",
                "task.steps=5",
                "task.progress=false",
                "task.hidden=16",
                "task.embed_dim=8",
                "task.eval_n=16",
            ],
        ),
        clf,
    )
    # an unconditional model: same config with conditional=false and fresh weights
    state = load_checkpoint(cond)
    cfg = OmegaConf.create(state["config"])
    cfg.model.conditional = False
    model = build_score_model(cfg, state["data_info"])
    state.update(
        config=OmegaConf.to_container(cfg), model=model.state_dict(), ema=model.state_dict()
    )
    uncond = root / "uncond.pt"
    save_checkpoint(uncond, state)
    return {"cond": cond, "clf": clf, "uncond": uncond}


def _gen(tmp_path, name, overrides):
    out = tmp_path / name
    s = generate(_compose("generate", [*FAST, *overrides]), out)
    with np.load(out / "samples.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return s, arrays


@pytest.mark.parametrize(
    "task", [["task=unconditional"], ["task=class", "task.w=1.5"]], ids=["uncond", "cfg"]
)
def test_same_seed_same_samples_whatever_the_batch_size(runs, tmp_path, task):
    ck = f"ckpt={runs['cond']}"
    s1, a = _gen(tmp_path, "a", [ck, "n=7", "batch_size=7", *task])
    _, b = _gen(tmp_path, "b", [ck, "n=7", "batch_size=3", *task])
    _, c = _gen(tmp_path, "c", [ck, "n=7", "batch_size=3", "seed=1", *task])
    np.testing.assert_allclose(a["samples_model"], b["samples_model"], rtol=1e-5, atol=1e-6)
    assert not np.allclose(a["samples_model"], c["samples_model"])
    assert (
        a["samples_model"].shape == (7, 2)
        and "samples" not in a
        and s1["nfe"] > 0
        and s1["wall_time_s"] > 0
    )
    if "task=class" in task:
        assert a["labels"].tolist() == [i % 8 for i in range(7)]


def test_classifier_guidance_inpaint_and_sdedit_tasks(runs, tmp_path):
    ck = f"ckpt={runs['cond']}"
    _, a = _gen(
        tmp_path,
        "cg",
        [
            ck,
            "n=4",
            "batch_size=3",
            "task=classifier_guidance",
            f"task.classifier_ckpt={runs['clf']}",
            "task.scale=2.0",
            "task.y=[1,2]",
        ],
    )
    assert a["labels"].tolist() == [1, 2, 1, 2] and np.isfinite(a["samples_model"]).all()
    _, b = _gen(tmp_path, "inp", [ck, "n=5", "batch_size=2", "task=inpaint", "task.mask=[1,0]"])
    np.testing.assert_array_equal(
        b["samples_model"][:, 0], b["known"][:, 0]
    )  # known coordinate kept
    _, b2 = _gen(tmp_path, "inp2", [ck, "n=5", "batch_size=5", "task=inpaint", "task.mask=[1,0]"])
    np.testing.assert_allclose(b["samples_model"], b2["samples_model"], rtol=1e-5, atol=1e-6)
    guide = tmp_path / "guide.npz"
    np.savez(guide, samples_model=np.array([[0.5, 0.5], [-2.0, 1.0]], dtype=np.float32))
    s, c = _gen(
        tmp_path,
        "sde",
        [
            ck,
            "task=sdedit",
            f"task.guide={guide}",
            "task.t0=1e-4",
            "task.n_per_guide=3",
            "batch_size=4",
        ],
    )
    assert s["n"] == 6 and c["guides"].shape == (2, 2)
    np.testing.assert_allclose(c["samples_model"], np.repeat(c["guides"], 3, axis=0), atol=0.05)


def test_bad_input_gives_clear_errors(runs, tmp_path):
    ck = f"ckpt={runs['cond']}"
    with pytest.raises(ValueError, match="mask shape"):
        _gen(tmp_path, "e1", [ck, "n=2", "task=inpaint", "task.mask=[1,0,1]"])
    with pytest.raises(ValueError, match=r"labels y must lie in \[0, 7\]"):
        _gen(tmp_path, "e2", [ck, "n=2", "task=class", "task.y=8"])
    with pytest.raises(ValueError, match="class-conditional model"):
        _gen(tmp_path, "e3", [f"ckpt={runs['uncond']}", "n=2", "task=class", "task.w=1.0"])
    for t0 in ("0.0", "1.5"):
        with pytest.raises(ValueError, match=r"t0 must lie in \(0, T"):
            _gen(
                tmp_path,
                "e4",
                [ck, "task=sdedit", f"task.guide={tmp_path / 'g.npz'}", f"task.t0={t0}"],
            )
    with pytest.raises(ValueError, match="not a classifier checkpoint"):
        _gen(
            tmp_path,
            "e5",
            [ck, "n=2", "task=classifier_guidance", f"task.classifier_ckpt={runs['cond']}"],
        )
    with pytest.raises(ValueError, match="RGB"):
        _gen(tmp_path, "e6", [ck, "n=2", "task=colorize"])


def test_cli_writes_npz_png_and_settings(runs, tmp_path):
    out = tmp_path / "cli"
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scoresde.generate",
            f"ckpt={runs['cond']}",
            "n=5",
            "batch_size=2",
            "sampler=dpm_solver",
            "sampler.steps=5",
            "threads=1",
            f"hydra.run.dir={out}",
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = {p.name for p in Path(out).iterdir()}
    assert {"samples.npz", "samples.png", "settings.json"} <= files
    assert not any(name.endswith(".tmp") or ".tmp." in name for name in files)
    settings = json.loads((out / "settings.json").read_text())
    assert settings["n"] == 5 and settings["nfe"] > 0 and settings["wall_time_s"] > 0
    assert settings["config"]["sampler"]["method"] == "dpm_solver"
    with np.load(out / "samples.npz") as z:
        assert z["samples_model"].shape == (5, 2) and np.isfinite(z["samples_model"]).all()
        assert str(z["format"]) == "scoresde-samples-v1" and "samples_levels" not in z.files
    assert "partial" not in files  # the per-batch resume files go once samples.npz is written


def _cli(args, cwd, nproc=1, timeout=300):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    head = [sys.executable, "-m", "scoresde.generate"]
    if nproc > 1:
        env["MASTER_ADDR"] = "127.0.0.1"
        head = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "scoresde.generate",
        ]  # fmt: skip
    return subprocess.run(
        [*head, *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_an_sde_override_is_refused_not_silently_ignored(runs, tmp_path):
    p = _cli([f"ckpt={runs['cond']}", "+sde=ve", f"hydra.run.dir={tmp_path}/o"], tmp_path)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 2 and "'sde'" in last and "ignored" in last, p.stderr
    assert last.startswith("error: ") and "valid keys are: batch_size, ckpt" in last
    assert not (tmp_path / "o" / "settings.json").exists()


class _Killed(Exception):
    pass


def test_a_run_killed_mid_way_resumes_its_batches_and_ends_as_an_uninterrupted_run(
    runs, tmp_path, monkeypatch
):
    from scoresde.generation import tasks

    args = [f"ckpt={runs['cond']}", "n=7", "batch_size=2"]
    full, ref = _gen(tmp_path, "ref", args)
    real, calls = tasks.TASKS["unconditional"], []

    def dying(*a, **k):
        plan = real(*a, **k)
        make = plan.make_batch

        def make_batch(idx, seeds):
            calls.append(idx)
            if len(calls) == 3:
                raise _Killed
            return make(idx, seeds)

        plan.make_batch = make_batch
        return plan

    monkeypatch.setitem(tasks.TASKS, "unconditional", dying)
    with pytest.raises(_Killed):
        _gen(tmp_path, "killed", args)
    out = tmp_path / "killed"
    assert not (out / "samples.npz").exists() and len(list((out / "partial").glob("*.pt"))) == 2
    monkeypatch.setitem(tasks.TASKS, "unconditional", real)
    s, again = _gen(tmp_path, "killed", args)
    assert s["resumed_batches"] == 2 and full["resumed_batches"] == 0
    np.testing.assert_array_equal(again["samples_model"], ref["samples_model"])
    # other settings start over cleanly instead of mixing old batches in
    s2, _ = _gen(tmp_path, "killed", [*args, "seed=3"])
    assert s2["resumed_batches"] == 0 and not (out / "partial").exists()


def test_two_processes_write_the_samples_of_one_process_exactly(runs, tmp_path):
    import time

    args = [f"ckpt={runs['cond']}", "n=64", "batch_size=8", "sampler.steps=20", "progress=false"]
    t0 = time.perf_counter()
    one = _cli([*args, f"hydra.run.dir={tmp_path}/one"], tmp_path)
    t1 = time.perf_counter()
    two = _cli([*args, f"hydra.run.dir={tmp_path}/two"], tmp_path, nproc=2)
    t2 = time.perf_counter()
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("wrote ") == 1  # rank 0 alone reports
    with (
        np.load(tmp_path / "one" / "samples.npz") as a,
        np.load(tmp_path / "two" / "samples.npz") as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
    s1 = json.loads((tmp_path / "one" / "settings.json").read_text())
    s2 = json.loads((tmp_path / "two" / "settings.json").read_text())
    assert s1["nfe"] == s2["nfe"] and s2["processes"] == 2
    print(
        f"\ngenerate n=64: 1 process {t1 - t0:.1f} s, 2 processes {t2 - t1:.1f} s "
        "(wall, incl. start)"
    )


def test_an_explicit_time_grid_reaches_the_sampler(runs, tmp_path):
    """``+sampler.timesteps=[...]`` (e.g. from fit_timesteps) sets the grid: 3 steps + the final
    step = 4 score evaluations; a contradicting ``steps`` is refused by name."""
    ck = f"ckpt={runs['cond']}"
    grid = ["sampler=unipc", "sampler.steps=null", "+sampler.timesteps=[1.0,0.3,0.05,0.001]"]
    s, arrays = _gen(tmp_path, "ts", [ck, "n=3", *grid])
    x = arrays["samples_model"]
    assert x.shape[0] == 3 and np.isfinite(x).all()
    assert s["nfe_per_sample_batch"] == 4
    bad = ["sampler=unipc", "sampler.steps=5", "+sampler.timesteps=[1.0,0.3,0.05,0.001]"]
    with pytest.raises(ValueError, match=r"steps must be None or len\(timesteps\) - 1 = 3"):
        _gen(tmp_path, "ts2", [ck, "n=3", *bad])
