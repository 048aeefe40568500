"""Training-loop benchmark: steps/s, samples/s, peak memory, and the loop's overhead.

For each model (the default main-job model -- digits with the MLP -- and ``unet_small`` on digits),
in a fresh subprocess so peak memory is per model:

- ``loop``: :class:`scoresde.training.loop.Loop` running :meth:`Trainer.train_step` and the periodic
  hooks (batch indexing, warmup lr, per-step seeded noise, gradient clipping, EMA update, loss
  buffering and logging).
- ``bare``: ``zero_grad; dsm_loss(model, sde, x).backward(); adam.step()`` on a fixed batch of the
  same model -- the floor the loop is compared with.

The two are timed in alternating blocks (so machine load affects both alike); we report medians
over blocks and ``overhead = median(loop) / median(bare) - 1``. Peak memory: ``ru_maxrss`` of the
subprocess on CPU, ``torch.cuda.max_memory_allocated`` on CUDA. One intra-op thread unless
``--threads`` says otherwise.

    python benchmarks/training.py                 # CPU (and CUDA when available)
    python benchmarks/training.py --quick         # fewer steps
Writes benchmarks/results/training.csv and .md.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = {
    "default (digits, mlp)": [],
    "unet_small (digits)": ["model=unet_small"],
}
COMMON = [
    "logger=none",
    "training.progress=false",
    "training.sample_every=0",
    "training.eval_every=0",
    "training.checkpoint_every=0",
    "training.snapshot_every=0",
    "training.final_sample_n=0",
    "training.final_likelihood_n=0",
    "training.plot=false",
    "training.log_every=50",
]


def _one(label: str, device: str, steps: int, blocks: int, threads: int) -> dict:
    import tempfile

    import torch
    from hydra import compose, initialize_config_module

    from scoresde.training.trainer import Trainer

    torch.set_num_threads(threads)
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        cfg = compose("config", overrides=[*COMMON, *MODELS[label], f"device={device}"])
    tr = Trainer(cfg, tempfile.mkdtemp(prefix="bench-train-"), progress=False)
    dev = tr.device
    # bare: a copy of the same model, a fixed batch
    bare_model = copy.deepcopy(tr.model)
    bare_opt = torch.optim.Adam(
        bare_model.parameters(), **tr.optimizer.defaults
    )  # same Adam (fused)
    x, _ = tr.train_ds.get_batch(torch.arange(cfg.training.batch_size))
    x = x.to(dev)
    if tr.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    g = torch.Generator(device=dev).manual_seed(0)

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def bare_block(n):
        sync()
        t0 = time.perf_counter()
        for _ in range(n):
            bare_opt.zero_grad(set_to_none=True)
            tr.loss_fn(bare_model, tr.sde, x, generator=g, **tr.loss_kwargs).backward()
            bare_opt.step()
        sync()
        return (time.perf_counter() - t0) / n

    def loop_block(n):
        sync()
        t0 = time.perf_counter()
        tr.loop.run(tr.step, tr.step + n)  # the shared loop with the run's periodic hooks
        tr.flush()
        sync()
        return (time.perf_counter() - t0) / n

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    loop_block(3)
    bare_block(3)  # warm-up
    loops, bares = [], []
    for _ in range(blocks):
        loops.append(loop_block(steps))
        bares.append(bare_block(steps))
    loop_s, bare_s = statistics.median(loops), statistics.median(bares)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
        mem_kind = "cuda max_memory_allocated"
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        mem_kind = "process ru_maxrss"
    B = int(cfg.training.batch_size)
    return {
        "model": label,
        "device": str(dev),
        "threads": threads,
        "batch": B,
        "params": sum(p.numel() for p in tr.model.parameters()),
        "steps_per_s": 1.0 / loop_s,
        "samples_per_s": B / loop_s,
        "bare_steps_per_s": 1.0 / bare_s,
        "loop_ms": loop_s * 1e3,
        "bare_ms": bare_s * 1e3,
        "overhead_pct": (loop_s / bare_s - 1.0) * 100.0,
        "peak_mem_mib": peak,
        "mem_kind": mem_kind,
        "blocks": blocks,
        "steps_per_block": steps,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--blocks", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    if args.one:
        print(json.dumps(_one(args.one, args.device, args.steps, args.blocks, args.threads)))
        return
    import torch

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for label in MODELS:
            heavy = "unet" in label and device == "cpu"
            steps = (3 if heavy else 20) if args.quick else (5 if heavy else 50)
            blocks = 3 if args.quick else 5
            cmd = [
                sys.executable,
                __file__,
                "--one",
                label,
                "--device",
                device,
                "--steps",
                str(steps),
                "--blocks",
                str(blocks),
                "--threads",
                str(args.threads),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{row['model']:>24} {row['device']:>5}: {row['steps_per_s']:7.2f} steps/s "
                f"{row['samples_per_s']:8.0f} samples/s  loop {row['loop_ms']:7.1f} ms  bare "
                f"{row['bare_ms']:7.1f} ms  overhead {row['overhead_pct']:+5.1f}%  "
                f"peak {row['peak_mem_mib']:.0f} MiB",
                flush=True,
            )
    res = HERE / "results"
    res.mkdir(exist_ok=True)
    with open(res / "training.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lines = [
        "# Training-loop benchmark (benchmarks/training.py)",
        "",
        (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {args.threads} intra-op thread(s); medians over "
            "alternating timing blocks; the machine may be shared."
        ),
        "",
        (
            "| model | device | params | batch | steps/s | samples/s | loop ms/step | bare ms/step "
            "| overhead | peak memory |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['device']} | {r['params']:,} | {r['batch']} | "
            f"{r['steps_per_s']:.2f} | "
            f"{r['samples_per_s']:.0f} | {r['loop_ms']:.1f} | {r['bare_ms']:.1f} | "
            f"{r['overhead_pct']:+.1f}% | {r['peak_mem_mib']:.0f} MiB ({r['mem_kind']}) |"
        )
    (res / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
