"""``python -m scoresde.convert`` on a release-format fixture.

Then generate and likelihood on the converted run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FIX = Path(__file__).parent / "fixtures" / "score_sde_pytorch"


def _run(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    return subprocess.run(
        [sys.executable, "-m", *args],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _on_run(command, run, tmp_path, *overrides):
    """``python -m scoresde.<command> ckpt=RUN ...`` writing into ``tmp_path / command``."""
    out = f"hydra.run.dir={tmp_path / command}"
    return _run(
        f"scoresde.{command}", f"ckpt={run}", "progress=false", out, *overrides, cwd=tmp_path
    )


def test_convert_then_generate_and_likelihood_run_on_the_converted_checkpoint(tmp_path):
    from PIL import Image

    run = tmp_path / "run"
    p = _run(
        "scoresde.convert",
        f"checkpoint={FIX / 've_ncsnpp_continuous.pth'}",
        f"config={FIX / 've_ncsnpp_continuous.json'}",
        f"out={run}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "config.yaml").is_file()

    p = _on_run("generate", run, tmp_path, "n=2", "batch_size=2", "sampler.steps=3")
    assert p.returncode == 0, p.stderr
    samples = np.load(tmp_path / "generate" / "samples.npz")["samples_model"]
    assert samples.shape[0] == 2 and np.isfinite(samples).all()

    images = tmp_path / "images"  # 16x16 RGB, the fixture net's size (CIFAR-10 files are 32x32)
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / f"{i}.png")
    data = ("+data.name=image_folder", f"+data.root={images}", "+data.image_size=16")
    solver = ("+data.n_test=1", "batch_size=1", "rtol=1e-2", "atol=1e-2")
    p = _on_run("likelihood", run, tmp_path, *data, *solver)
    assert p.returncode == 0, p.stderr
    result = json.loads((tmp_path / "likelihood" / "likelihood.json").read_text())
    assert result["complete"] and result["n_total"] == 1 and result["unit"] == "bits/dim"
    assert np.isfinite(result["result"]["mean"])


def test_convert_reports_a_missing_checkpoint_in_one_line_with_exit_code_2(tmp_path):
    p = _run(
        "scoresde.convert",
        f"checkpoint={tmp_path / 'nope.pth'}",
        "config=ve/cifar10_ncsnpp_continuous",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=tmp_path,
    )
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "nope.pth" in p.stderr and "does not exist" in p.stderr
