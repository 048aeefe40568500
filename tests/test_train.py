"""Training: configs compose, a toy run learns, the CLI main job / sweeps / launchers, wandb
offline."""

import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from scoresde.io.runs import build_sde, load_run
from scoresde.training.trainer import train

REPO = Path(__file__).resolve().parents[1]

# A tiny, fast toy-2D configuration for in-process runs.
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
    "data.n=2000",
    "data.n_test=200",
    "training.plot=false",
]


def cfg_of(*overrides):
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        return compose("config", overrides=list(overrides))


def _env(**extra):
    env = dict(
        os.environ,
        WANDB_MODE="disabled",
        WANDB_SILENT="true",
        OMP_NUM_THREADS="1",
        HYDRA_FULL_ERROR="1",
        **extra,
    )
    return env


# ------------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["sde=ve"],
        ["sde=subvp", "data=moons"],
        ["model=unet_small"],
        ["experiment=digits_vp"],
        ["experiment=digits_ve"],
        ["experiment=toy2d", "data=swissroll"],
        ["experiment=cifar10_ddpmpp_vp"],
        ["experiment=cifar10_ddpmpp_subvp"],
        ["experiment=cifar10_ncsnpp_ve"],
        ["logger=none"],
        ["logger.mode=online"],
        ["device=cpu", "seed=3", "training.lr=1e-4", "training.batch_size=32"],
        ["data=fashion_mnist", "model=unet_small"],
        ["sampler=pc"],
        ["sampler=ddim"],
    ],
)
def test_configs_compose(overrides):
    cfg = cfg_of(*overrides)
    assert cfg.task.name == "score" and cfg.sde.name in ("vp", "subvp", "ve")
    assert {"method"} <= set(cfg.sampler) and cfg.logger.name in ("wandb", "none")
    build_sde(cfg.sde)


def test_paper_presets_hold_published_hyperparameters():
    vp = cfg_of("experiment=cifar10_ddpmpp_vp")
    ve = cfg_of("experiment=cifar10_ncsnpp_ve")
    for c in (vp, ve):
        t = c.training
        assert (t.lr, t.batch_size, t.warmup, t.grad_clip, t.steps) == (
            2e-4,
            128,
            5000,
            1.0,
            1300000,
        )
        assert c.data.name == "cifar10" and c.data.random_flip
    assert vp.training.ema_decay == 0.9999 and ve.training.ema_decay == 0.999
    assert vp.training.reduce == "mean" and ve.training.reduce == "sum"
    assert list(ve.data.data_range) == [0.0, 1.0] and ve.sde.sigma_max == 50.0
    assert (
        ve.sampler.method == "pc"
        and ve.sampler.snr == 0.16
        and ve.model.parameterization == "score_scaled"
    )
    assert cfg_of("experiment=cifar10_ddpmpp_subvp").sde.name == "subvp"


def test_every_sampler_config_is_accepted_by_sample():
    """keys of conf/sampler/*.yaml == sample() kwargs: a 1-sample run with a Gaussian score."""
    from scoresde.oracle import GaussianMixture
    from scoresde.sampling import METHODS, sample

    names = sorted(p.stem for p in (REPO / "conf" / "sampler").glob("*.yaml"))
    assert set(METHODS) <= set(names)
    sde = build_sde(cfg_of().sde)
    gmm = GaussianMixture(torch.ones(1), torch.zeros(1, 2), torch.ones(1, 2))
    for name in names:
        opts = dict(cfg_of(f"sampler={name}").sampler)
        if name not in ("ode", "adaptive", "ddim", "heun", "dpm_solver"):
            opts["steps"] = 5
        if name == "ode":
            opts.update(rtol=1e-2, atol=1e-2)
        res = sample(
            sde, gmm.score_fn(sde), (2, 2), generator=torch.Generator().manual_seed(0), **opts
        )
        assert res.x.shape == (2, 2) and torch.isfinite(res.x).all(), name


@pytest.mark.parametrize(
    "launcher", ["joblib", "joblib_cpu", "submitit_slurm", "slurm", "submitit_local"]
)
def test_launcher_presets_compose_and_import(launcher):
    import importlib

    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        cfg = compose("config", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    target = cfg.hydra.launcher._target_
    mod, cls = target.rsplit(".", 1)
    assert hasattr(importlib.import_module(mod), cls)
    if launcher == "slurm":
        assert cfg.hydra.launcher.gpus_per_node == 1 and "slurm" in target.lower()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["training.steps=0"], "training.steps must be an integer >= 1"),
        (["training.lr=-1"], "training.lr must be > 0"),
        (["device=tpu"], "device must be one of cpu, cuda"),
        (["training.loss=foo"], "training.loss must be one of"),
        (["training.weighting=foo"], "training.weighting must be one of"),
        (["training.ema_decay=1.5"], r"training.ema_decay must be in \[0, 1\)"),
        (["sde.name=foo"], "sde.name must be one of"),
        (["training.grad_accum=3"], "must be divisible by world_size x grad_accum"),
        (["training.batch_size=5000"], "exceeds the training set size"),
        (["logger=wandb", "logger.mode=sometimes"], "logger.mode must be one of"),
    ],
)
def test_bad_config_values_give_clear_errors(tmp_path, overrides, match, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = cfg_of(*TINY, "training.steps=1", *overrides)
    with pytest.raises(ValueError, match=match):
        train(cfg, tmp_path)


def test_cuda_request_without_gpu_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        train(cfg_of(*TINY, "device=cuda"), tmp_path)


# ------------------------------------------------------------------------------- learning
def test_toy2d_training_learns_the_data(tmp_path):
    """gmm8: loss falls, held-out likelihood beats the prior's, samples are close to the data."""
    from scoresde.data import make_toy2d
    from scoresde.metrics import sliced_wasserstein

    cfg = cfg_of(
        *TINY,
        "data=gmm8",
        "model.hidden=64",
        "model.num_blocks=2",
        "training.steps=800",
        "training.batch_size=256",
        "training.lr=3e-3",
        "training.warmup=50",
        "training.ema_decay=0.99",
        "training.final_sample_n=1000",
        "training.final_likelihood_n=200",
        "training.likelihood.trace=exact",
        "training.plot=true",
        "training.likelihood.rtol=1e-3",
        "training.likelihood.atol=1e-3",
    )
    res = train(cfg, tmp_path)
    first, last = sum(res.losses[:50]) / 50, sum(res.losses[-100:]) / 100
    assert last < 0.6 * first, (first, last)
    lk = json.loads((tmp_path / "likelihood.json").read_text())
    # true gmm8 NLL ~ 0.15 nats/dim, the N(0, I) prior's ~ 1.9: demand most of the gap
    assert lk["nll_nats_per_dim"] < lk["prior_nll_nats_per_dim"] - 1.0, lk
    g = torch.Generator().manual_seed(7)
    data = make_toy2d("gmm8", 1000, torch.Generator().manual_seed(99))[0]
    other = make_toy2d("gmm8", 1000, torch.Generator().manual_seed(98))[0]
    run = load_run(tmp_path)
    from scoresde.sampling import sample

    xs = sample(run.sde, run.score_fn(), (1000, 2), generator=g, **dict(run.cfg.sampler)).x
    sw_model = sliced_wasserstein(xs, data, generator=torch.Generator().manual_seed(0))
    sw_floor = sliced_wasserstein(other, data, generator=torch.Generator().manual_seed(0))
    sw_prior = sliced_wasserstein(
        torch.randn(1000, 2, generator=g), data, generator=torch.Generator().manual_seed(0)
    )
    # floor: two independent data draws (finite-sample error); prior: N(0, I) vs data
    assert sw_model < 0.5 * sw_prior and sw_model < sw_floor + 0.15, (sw_model, sw_floor, sw_prior)
    assert (tmp_path / "samples" / "final.png").is_file() and (
        tmp_path / "loss_curve.png"
    ).is_file()


# ------------------------------------------------------------------------------- wandb
def _wandb_records(path: Path):
    """Parse a .wandb file (LevelDB log format: 32 KiB blocks, 7-byte record headers) into
    Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, out, buf = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def test_wandb_offline_run_holds_logged_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = cfg_of(
        *TINY,
        "logger=wandb",
        "logger.mode=disabled",
        "training.steps=20",
        "training.log_every=5",
        "training.eval_every=10",
        "training.sample_every=10",
        "training.sample_n=16",
        "training.likelihood_every=10",
        "training.likelihood_n=8",
        "training.final_likelihood_n=8",
        "training.likelihood.rtol=1e-2",
        "training.likelihood.atol=1e-2",
    )
    train(cfg, tmp_path, name="tiny", group="g1")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "WANDB_MODE=offline must win over logger.mode=disabled"
    # wandb's service process may still be flushing the log under load: poll it briefly
    for _ in range(40):
        recs = _wandb_records(next(runs[0].glob("*.wandb")))
        keys = {
            item.key or "/".join(item.nested_key)
            for r in recs
            if r.HasField("history")
            for item in r.history.item
        }
        if "final/nll_nats_per_dim" in keys:
            break
        time.sleep(0.5)
    for k in (
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "eval/ema_loss",
        "samples/images/_type",
        "samples/nfe",
        "likelihood/nll_nats_per_dim",
        "final/nll_nats_per_dim",
    ):
        assert k in keys, (k, sorted(keys))
    assert list((runs[0] / "files" / "media").rglob("*.png"))  # the sample grid itself
    updates = [i for r in recs if r.HasField("config") for i in r.config.update]
    updates += [i for r in recs if r.HasField("run") for i in r.run.config.update]
    config = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in updates}
    train_cfg = config.get("training") or {
        k.split("/", 1)[1]: v for k, v in config.items() if k.startswith("training/")
    }
    assert train_cfg["steps"] == 20 and config.get("seed", 0) == 0
    run = next(r.run for r in recs if r.HasField("run"))
    assert run.display_name == "tiny" and run.run_group == "g1"
    assert any(r.HasField("exit") for r in recs)  # finished


# ------------------------------------------------------------------------------- CLI
def test_readme_main_command_with_tiny_budget(tmp_path):
    """`python -m scoresde.train` (the main job, default config) with a tiny budget."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "scoresde.train",
        "training.steps=4",
        "training.log_every=2",
        "training.final_sample_n=16",
        "training.final_likelihood_n=8",
        "training.likelihood.rtol=1e-2",
        "training.likelihood.atol=1e-2",
        "training.progress=false",
        f"hydra.run.dir={out}",
        "threads=1",
    ]
    p = subprocess.run(
        cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "held-out likelihood" in p.stdout and "bits/dim" in p.stdout
    for f in (
        "checkpoints/last.pt",
        "samples/final.png",
        "loss_curve.png",
        "likelihood.json",
        "losses.jsonl",
        ".hydra/config.yaml",
    ):
        assert (out / f).is_file(), f
    assert "UserWarning" not in p.stderr and "deprecated" not in p.stderr.lower(), p.stderr[-2000:]
    run = load_run(out)
    assert run.step == 4 and run.data_info["levels"] == 17 and run.cfg.data.name == "digits"
    assert math.isfinite(json.loads((out / "likelihood.json").read_text())["bpd"])


def test_multirun_sweep_with_joblib_gives_one_run_dir_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "scoresde.train",
        "-m",
        "hydra/launcher=joblib_cpu",
        "threads=1",
        "seed=0,1",
        *[o for o in TINY if not o.startswith("training.progress")],
        "training.steps=3",
        f"hydra.sweep.dir={sweep}",
    ]
    p = subprocess.run(
        cmd, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert p.returncode == 0, p.stderr[-3000:]
    dirs = sorted(d for d in sweep.iterdir() if d.is_dir() and (d / ".hydra").is_dir())
    assert [d.name for d in dirs] == ["0", "1"]
    seeds = []
    for d in dirs:
        assert (d / "checkpoints" / "last.pt").is_file()
        seeds.append(load_run(d).cfg.seed)
    assert seeds == [0, 1]
