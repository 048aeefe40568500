"""Feature nets (digits), their cache, and ``python -m scoresde.evaluate`` end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from scoresde.evaluation import (
    FeatureNet,
    NetFeatures,
    fashion_mnist_root,
    feature_net_path,
    load_feature_dataset,
    load_feature_net,
    make_feature_extractor,
    run_evaluation,
    sampler_options,
    save_feature_net,
    summarize,
    train_feature_net,
)
from scoresde.generation import load_samples

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_cache(tmp_path_factory):
    """A small digits feature net (3 epochs, width 16: ~1-2 s on one core) in a tmp cache."""
    cache = tmp_path_factory.mktemp("features")
    net, info = train_feature_net("digits", epochs=3, width=16, seed=0)
    save_feature_net(feature_net_path("digits", cache), net, info)
    return cache, net, info


# ---------------------------------------------------------------------------- feature nets
def test_digits_feature_net_trains_to_high_accuracy_and_its_cache_round_trips(digits_cache):
    cache, net, info = digits_cache
    assert info["test_accuracy"] >= 0.90, info
    assert info["num_test"] == 297 and info["config"]["feature_dim"] == 64
    loaded, info2 = load_feature_net("digits", cache, train_if_missing=False)
    assert info2 == info
    x, _ = load_feature_dataset("digits", "test")
    with torch.no_grad():
        assert torch.equal(loaded.features(x), net.features(x))
    extractor = make_feature_extractor("digits", cache_dir=cache, train_if_missing=False)
    assert isinstance(extractor, NetFeatures)
    assert extractor(x[:10]).shape == (10, 64)
    with pytest.raises(ValueError, match="shape"):
        extractor(torch.zeros(2, 1, 28, 28))


def test_feature_net_cache_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m scoresde.features dataset=digits"):
        load_feature_net("digits", tmp_path, train_if_missing=False)
    feature_net_path("digits", tmp_path).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read feature net"):
        load_feature_net("digits", tmp_path)
    with pytest.raises(ValueError, match="dataset must be one of"):
        load_feature_net("cifar10", tmp_path)


@pytest.mark.skipif(
    fashion_mnist_root() is None,
    reason="Fashion-MNIST IDX files not installed (Debian package dataset-fashion-mnist)",
)
def test_fashion_mnist_feature_data_and_net_shapes():
    x, y = load_feature_dataset("fashion", "test")
    assert x.shape == (10000, 1, 28, 28) and y.shape == (10000,)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    net = FeatureNet(image_size=28, feature_dim=128).eval()
    assert NetFeatures(net)(x[:8]).shape == (8, 128)


# ---------------------------------------------------------------------------- evaluate library
def test_summary_reports_mean_std_min_over_seed_sets():
    s = summarize([{"seed": 0, "fd": 1.0}, {"seed": 1, "fd": 3.0}, {"seed": 2, "fd": 2.0}])
    assert s["fd"] == {"mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}


def test_sampler_options_merge_over_the_run_and_replace_on_a_new_method():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"sampler": {"method": "pc", "steps": 100, "snr": 0.16}})
    assert sampler_options(cfg, {"steps": 10}) == {"method": "pc", "steps": 10, "snr": 0.16}
    assert sampler_options(cfg, {"method": "ode", "rtol": 1e-3}) == {"method": "ode", "rtol": 1e-3}


def test_image_metrics_in_digits_features_separate_real_from_noise(digits_cache, tmp_path):
    cache = digits_cache[0]
    real_train, _ = load_feature_dataset("digits", "train")
    np.savez(tmp_path / "real.npz", x=real_train.numpy())
    noise = torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    np.savez(tmp_path / "noise.npz", samples_model=noise[:, 0].numpy())  # [N, H, W] gets a channel
    common = {
        "data": {"name": "digits"},
        "num_samples": 300,
        "seeds": [0, 1],
        "feature_cache": str(cache),
        "options": {"kid_subsets": 10, "kid_subset_size": 200},
    }
    good = run_evaluation(samples=str(tmp_path / "real.npz"), **common)
    bad = run_evaluation(samples=str(tmp_path / "noise.npz"), **common)
    assert good["features"] == "digits" and good["metrics"] == ["fd", "kid", "pr"]
    assert good["feature_net"]["test_accuracy"] == digits_cache[2]["test_accuracy"]
    g, b = good["summary"], bad["summary"]
    assert g["fd"]["mean"] * 10 < b["fd"]["mean"]
    assert g["kid"]["mean"] < 0.1 * b["kid"]["mean"]
    # noise features collapse into a small region: recall is low (precision stays ~0.4 there,
    # inside the balls of atypical real digits -- a known trait of k-NN manifolds)
    assert g["precision"]["mean"] > 0.8 and g["recall"]["mean"] > 0.8
    assert b["recall"]["mean"] < 0.2 and b["precision"]["mean"] < 0.7
    assert [r["seed"] for r in good["per_seed"]] == [0, 1]
    assert good["per_seed"][0]["fd"] != good["per_seed"][1]["fd"]  # different seeded subsets


def test_evaluate_rejects_ambiguous_input(tmp_path):
    with pytest.raises(ValueError, match="exactly one of ckpt"):
        run_evaluation()
    np.savez(tmp_path / "bad.npz", y=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="bad.npz: no samples array"):
        load_samples(tmp_path / "bad.npz")


# ---------------------------------------------------------------------------- CLI on an .npz
def test_evaluate_cli_on_npz_writes_json(tmp_path):
    g = torch.Generator().manual_seed(0)
    real = torch.randn(800, 2, generator=g)
    np.savez(tmp_path / "real.npz", x=real.numpy())
    np.savez(tmp_path / "fake.npz", samples_model=(torch.randn(1200, 2, generator=g) + 0.5).numpy())
    out = tmp_path / "out"
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    cmd = [
        sys.executable,
        "-m",
        "scoresde.evaluate",
        f"samples={tmp_path / 'fake.npz'}",
        f"reference={tmp_path / 'real.npz'}",
        "num_samples=600",
        "seeds=[0,1,2]",
        "progress=false",
        "logger=wandb",
        f"hydra.run.dir={out}",
    ]
    proc = subprocess.run(
        cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "evaluate.json").read_text())
    assert report["kind"] == "vector" and report["metrics"] == ["sw", "mmd", "energy"]
    assert report["seeds"] == [0, 1, 2] and report["num_samples"] == 600
    sw = [r["sw"] for r in report["per_seed"]]
    assert report["summary"]["sw"]["min"] == min(sw)
    assert report["summary"]["sw"]["mean"] == pytest.approx(np.mean(sw))
    # N(0, I) vs N(0.5 * 1, I) in 2-D: SW2 = |mu| / sqrt(2) = 0.5
    assert report["summary"]["sw"]["mean"] == pytest.approx(0.5, abs=0.1)
    assert report["summary"]["mmd"]["mean"] > 0 and report["summary"]["energy"]["mean"] > 0
    assert not list(out.glob("*.tmp"))


# ---------------------------------------------------------------------------- from a checkpoint
def _tiny_run(run_dir: Path) -> Path:
    from scoresde.io.checkpoint import save_checkpoint
    from scoresde.io.runs import build_dataset, build_score_model

    config = {
        "sde": {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "N": 100},
        "model": {
            "name": "mlp",
            "parameterization": "eps",
            "hidden": 32,
            "num_blocks": 1,
            "embed_dim": 16,
        },
        "data": {"name": "moons", "n": 1000, "n_test": 400, "seed": 0},
        "sampler": {"method": "euler_maruyama", "steps": 8},
    }
    info = build_dataset(config["data"], "train").info
    torch.manual_seed(0)
    model = build_score_model(config, info)
    state = {
        "model": model.state_dict(),
        "ema": model.state_dict(),
        "step": 7,
        "config": config,
        "data_info": info,
        "optimizer": {},
        "rng": {},
    }
    return save_checkpoint(run_dir / "checkpoints" / "last.pt", state)


def test_evaluate_from_a_checkpoint_is_seed_pinned_and_batch_size_independent(tmp_path):
    try:
        import scoresde.io.runs  # noqa: F401
        from scoresde.sampling import sample  # noqa: F401
    except ImportError as e:
        pytest.skip(f"scoresde.io.runs / scoresde.sampling.sample not available: {e}")
    _tiny_run(tmp_path / "run")
    kw = {"ckpt": str(tmp_path / "run"), "num_samples": 150, "seeds": [0, 1]}
    a = run_evaluation(batch_size=150, **kw)
    b = run_evaluation(batch_size=64, **kw)
    assert a["step"] == 7 and a["kind"] == "vector" and a["reference"]["n"] == 400
    assert a["sampler"] == {"method": "euler_maruyama", "steps": 8}
    assert a["nfe_per_set"][0] >= 8
    for ra, rb in zip(a["per_seed"], b["per_seed"]):
        assert ra["sw"] == pytest.approx(rb["sw"], rel=1e-4)
    assert a["per_seed"][0]["sw"] != a["per_seed"][1]["sw"]
    c = run_evaluation(sampler={"steps": 4}, **{**kw, "seeds": [0]})
    assert c["sampler"]["steps"] == 4 and c["nfe_per_set"][0] < a["nfe_per_set"][0]


def test_evaluate_image_checkpoint_in_digits_features_clips_samples(tmp_path, digits_cache):
    try:
        from scoresde.io.checkpoint import save_checkpoint
        from scoresde.io.runs import build_dataset, build_score_model
        from scoresde.sampling import sample  # noqa: F401
    except ImportError as e:
        pytest.skip(f"scoresde.io.runs / scoresde.sampling.sample not available: {e}")
    config = {
        "sde": {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "N": 100},
        "model": {
            "name": "unet_small",
            "parameterization": "eps",
            "ch": 8,
            "ch_mult": [1, 2],
            "num_res_blocks": 1,
        },
        "data": {"name": "digits"},
        "sampler": {"method": "euler_maruyama", "steps": 3},
    }
    info = build_dataset(config["data"], "train").info
    torch.manual_seed(0)
    state = {
        "model": build_score_model(config, info).state_dict(),
        "step": 1,
        "config": config,
        "data_info": info,
    }
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", state)
    r = run_evaluation(
        ckpt=str(tmp_path / "run"),
        num_samples=100,
        seeds=[0],
        feature_cache=str(digits_cache[0]),
        options={"kid_subsets": 5},
        sample_dir=tmp_path / "s",
    )
    assert r["kind"] == "image" and r["features"] == "digits" and r["clip"] is True
    assert set(r["summary"]) == {"fd", "kid", "kid_std", "precision", "recall"}
    saved = load_samples(tmp_path / "s" / "samples_seed0.npz")
    assert saved.shape == (100, 1, 8, 8)  # model range, as generate writes them
    # the saved file scores as the samples in memory did (same set, same seed)
    again = run_evaluation(
        samples=str(tmp_path / "s" / "samples_seed0.npz"),
        data={"name": "digits"},
        num_samples=None,
        seeds=[0],
        feature_cache=str(digits_cache[0]),
        options={"kid_subsets": 5},
    )
    assert again["per_seed"][0]["fd"] == pytest.approx(r["per_seed"][0]["fd"], rel=1e-6)


# ---------------------------------------------------------------------------- generate's own file
def test_generate_file_scores_as_the_same_samples_drawn_in_memory(tmp_path, digits_cache):
    """The README's route (generate, then evaluate samples=) gives the FD of the samples
    themselves: generate and evaluate draw the same per-sample seeds from `seed`, so evaluate
    ckpt=RUN (in memory) and evaluate samples=<generate's samples.npz> score the same set."""
    from hydra import compose, initialize_config_module

    from scoresde.generation import generate
    from scoresde.io.checkpoint import save_checkpoint
    from scoresde.io.runs import build_dataset, build_score_model

    sampler = {"method": "euler_maruyama", "steps": 3, "time_grid": "uniform", "eps": 1e-3}
    config = {
        "sde": {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "N": 100},
        "model": {"name": "unet_small", "ch": 8, "ch_mult": [1, 2], "num_res_blocks": 1},
        "data": {"name": "digits"},
        "sampler": {**sampler, "denoise": True},
    }
    info = build_dataset(config["data"], "train").info
    torch.manual_seed(0)
    sd = build_score_model(config, info).state_dict()
    state = {"model": sd, "ema": sd, "step": 1, "config": config, "data_info": info}
    save_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt", state)
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        cfg = compose(
            "generate",
            [f"ckpt={tmp_path / 'run'}", "n=120", "batch_size=50", "seed=4", "progress=false",
             "sampler=euler_maruyama", "sampler.steps=3"],
        )  # fmt: skip
    generate(cfg, tmp_path / "gen")
    with np.load(tmp_path / "gen" / "samples.npz") as z:
        assert z["samples_levels"].dtype == np.uint8 and int(z["levels"]) == 17
        assert z["samples_model"].dtype == np.float32
    common = {"seeds": [4], "feature_cache": str(digits_cache[0]), "options": {"kid_subsets": 5}}
    in_memory = run_evaluation(ckpt=str(tmp_path / "run"), num_samples=120, **common)
    from_file = run_evaluation(
        samples=str(tmp_path / "gen" / "samples.npz"), data={"name": "digits"}, num_samples=None,
        **common,
    )  # fmt: skip
    fd_mem, fd_file = in_memory["per_seed"][0]["fd"], from_file["per_seed"][0]["fd"]
    assert fd_file == pytest.approx(fd_mem, rel=1e-5), (fd_file, fd_mem)
    # the pixel levels are the same samples rounded to 17 levels: scored alone they agree closely
    np.savez(tmp_path / "levels.npz", **{k: np.load(tmp_path / "gen" / "samples.npz")[k]
             for k in ("samples_levels", "levels", "data_range")})  # fmt: skip
    levels = run_evaluation(samples=str(tmp_path / "levels.npz"), data={"name": "digits"},
                            num_samples=None, **common)  # fmt: skip
    assert levels["per_seed"][0]["fd"] == pytest.approx(fd_mem, rel=0.2)


def test_two_process_evaluate_scores_the_samples_of_one_process(tmp_path):
    _tiny_run(tmp_path / "run")
    args = [f"ckpt={tmp_path / 'run'}", "num_samples=64", "seeds=[0,1]", "batch_size=16"]
    one = run_evaluation(
        ckpt=str(tmp_path / "run"), num_samples=64, seeds=[0, 1], batch_size=16, progress=False
    )
    env = {
        **os.environ,
        "WANDB_MODE": "disabled",
        "OMP_NUM_THREADS": "1",
        "MASTER_ADDR": "127.0.0.1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "scoresde.evaluate", *args, "progress=false",
           f"hydra.run.dir={tmp_path / 'two'}"]  # fmt: skip
    p = subprocess.run(
        cmd, check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("wrote ") == 1  # rank 0 alone reports
    two = json.loads((tmp_path / "two" / "evaluate.json").read_text())
    assert two["processes"] == 2 and two["nfe_per_set"] == one["nfe_per_set"]
    for a, b in zip(one["per_seed"], two["per_seed"]):
        assert a == b
