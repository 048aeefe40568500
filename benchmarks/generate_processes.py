"""Wall time of ``generate`` on 1 process against ``torchrun --nproc_per_node=2`` (same work).

A small digits U-Net checkpoint (random weights: the cost of sampling does not depend on the
training) is sampled with the same seed, sampler and ``n`` by one process and by two (gloo,
one intra-op thread each). Reported per run: the end-to-end wall time of the command (process
start, imports, rendezvous included) and the sampling time the command records in
``settings.json``; the samples of both runs are checked equal. Runs alternate (1, 2, 1, 2, ...)
so machine load affects both alike; medians over ``--repeats``.

    python benchmarks/generate_processes.py            # n=256, 3 repeats
    python benchmarks/generate_processes.py --n 64 --repeats 1
Writes benchmarks/results/generate_processes.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scoresde.io.checkpoint import save_checkpoint
from scoresde.io.runs import build_dataset, build_score_model

HERE = Path(__file__).resolve().parent


def _checkpoint(root: Path) -> Path:
    cfg = {
        "sde": {"name": "vp", "N": 1000},
        "model": {"name": "unet_small", "ch": 16, "ch_mult": [1, 2], "num_res_blocks": 1},
        "data": {"name": "digits"},
        "sampler": {"method": "euler_maruyama", "steps": 50},
    }
    info = dict(build_dataset(cfg["data"], "test").info)
    torch.manual_seed(0)
    sd = build_score_model(cfg, info).state_dict()
    state = {"model": sd, "ema": sd, "step": 0, "config": cfg, "data_info": info}
    return save_checkpoint(root / "run" / "checkpoints" / "last.pt", state)


def _run(nproc: int, args: list[str], out: Path) -> tuple[float, float]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "MASTER_ADDR": "127.0.0.1",
    }
    head = [sys.executable, "-m", "scoresde.generate"]
    if nproc > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc_per_node={nproc}", "-m", "scoresde.generate"]  # fmt: skip
    t0 = time.perf_counter()
    p = subprocess.run(
        [*head, *args, f"hydra.run.dir={out}"], capture_output=True, text=True, env=env, check=False
    )
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"generate on {nproc} process(es) failed:\n{p.stderr[-3000:]}")
    return wall, json.loads((out / "settings.json").read_text())["wall_time_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    rows: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _checkpoint(root)
        args = [f"ckpt={root / 'run'}", f"n={a.n}", f"batch_size={a.batch_size}",
                "sampler=euler_maruyama", f"sampler.steps={a.steps}",
                "progress=false", "threads=1"]  # fmt: skip
        for r in range(a.repeats):
            for nproc in (1, 2):
                rows[nproc].append(_run(nproc, args, root / f"out{nproc}_{r}"))
        with (
            np.load(root / "out1_0" / "samples.npz") as x1,
            np.load(root / "out2_0" / "samples.npz") as x2,
        ):
            equal = bool(np.array_equal(x1["samples_model"], x2["samples_model"]))
    print(f"generate n={a.n}, digits unet_small (ch 16), euler_maruyama {a.steps} steps, "
          f"batch {a.batch_size}, 1 thread per process, {os.cpu_count()} CPUs; "
          f"medians of {a.repeats}")  # fmt: skip
    print(f"{'processes':>9} {'wall s (command)':>17} {'sampling s':>11}")
    out_rows = []
    for nproc, vals in rows.items():
        wall = statistics.median(v[0] for v in vals)
        samp = statistics.median(v[1] for v in vals)
        out_rows.append(
            {"processes": nproc, "n": a.n, "wall_s": round(wall, 3), "sampling_s": round(samp, 3)}
        )
        print(f"{nproc:>9} {wall:>17.2f} {samp:>11.2f}")
    w1, w2 = out_rows[0]["wall_s"], out_rows[1]["wall_s"]
    s1, s2 = out_rows[0]["sampling_s"], out_rows[1]["sampling_s"]
    print(
        f"speed-up 2 vs 1: command {w1 / w2:.2f}x, sampling {s1 / s2:.2f}x; samples equal: {equal}"
    )
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "generate_processes.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*out_rows[0], "samples_equal"])
        w.writeheader()
        for r in out_rows:
            w.writerow({**r, "samples_equal": equal})


if __name__ == "__main__":
    main()
