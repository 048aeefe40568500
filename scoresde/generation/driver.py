"""``generate(cfg, out_dir)``: samples from a trained run, written as one samples file.

Writes (atomically) ``samples.npz`` (:mod:`scoresde.generation.samples_file`), ``samples.png``
(a grid or a scatter plot) and ``settings.json`` (config, NFE, wall time). On several processes
(torchrun) each rank draws its share of the items and rank 0 writes the same files as one
process. Finished batches are kept in ``<out_dir>/partial/`` until the end, so a killed run
restarted with the same output directory and settings resumes (``resume=true``); other settings
start over cleanly. ``samples.npz`` is never half written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from scoresde import sampling
from scoresde.checks import check_size
from scoresde.generation.config import TASK_CONFIGS, GenerateConfig
from scoresde.generation.loop import sample_in_batches
from scoresde.generation.samples_file import save_samples
from scoresde.generation.tasks import TASKS, data_items
from scoresde.io import distributed
from scoresde.io.atomic import atomic_write, write_json_atomic
from scoresde.io.distributed import ProcessInfo
from scoresde.io.plots import save_image_grid
from scoresde.io.plots import save_samples as save_scatter
from scoresde.io.runs import load_run
from scoresde.sampling.noise import draw_seeds

__all__ = ["check_size", "generate"]  # check_size: scoresde.checks (re-exported)

# settings that may change between a killed run and its resume
_MAY_CHANGE = ("progress", "resume", "threads", "device", "nrow", "batch_size")


def _as_config(cfg: Any) -> DictConfig:
    if isinstance(cfg, GenerateConfig):
        return OmegaConf.structured(cfg)
    return cfg if OmegaConf.is_config(cfg) else OmegaConf.create(cfg)


def _check_sampler(sampler: dict[str, Any]) -> None:
    method_options = getattr(sampling, "method_options", None)
    if method_options is None:
        return
    opts = {k: v for k, v in sampler.items() if k not in ("method", "steps")}
    method_options(sampler.get("method", "pc"), **opts)


def _check_task(task: Any) -> str:
    name = task.get("name") if task is not None else None
    if name not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} for generate, got {name!r}")
    known = {f.name for f in fields(TASK_CONFIGS[name])}
    unknown = sorted(set(task) - known)
    if unknown:
        raise ValueError(
            f"task={name} does not use {', '.join('task.' + k for k in unknown)}; its keys are "
            f"{sorted(known)}"
        )
    return name


def _fingerprint(cfg: DictConfig, run, world: int) -> str:
    plain = OmegaConf.to_container(cfg, resolve=True)
    kept = {k: v for k, v in plain.items() if k not in _MAY_CHANGE}
    key = json.dumps([kept, str(run.checkpoint), run.step, world], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _partial_dir(out_dir: Path, cfg: DictConfig, run, process: ProcessInfo) -> Path:
    """``<out>/partial`` for these settings: kept when they match, emptied when they do not."""
    part = out_dir / "partial"
    stamp = part / "settings.json"
    want = _fingerprint(cfg, run, process.world)
    if process.is_main:
        have = None
        if stamp.is_file():
            try:
                have = json.loads(stamp.read_text()).get("fingerprint")
            except (OSError, ValueError):
                have = None
        if have != want or not cfg.resume:
            shutil.rmtree(part, ignore_errors=True)
        write_json_atomic(stamp, {"fingerprint": want, "world": process.world})
    distributed.barrier()
    return part


def generate(
    cfg: GenerateConfig | DictConfig | dict,
    out_dir: str | Path,
    *,
    device: torch.device | str | None = None,
    process: ProcessInfo | None = None,
) -> dict[str, Any]:
    """Run the generation described by ``cfg`` and write its files into ``out_dir`` (rank 0).

    Returns the settings dict (also ``settings.json``): ``nfe`` (score evaluations summed over
    batches and ranks), ``wall_time_s``, the output paths.
    """
    cfg = _as_config(cfg)
    process = process or distributed.process_info()
    out_dir = Path(out_dir)
    n = check_size("n", cfg.n)
    batch_size = check_size("batch_size", cfg.batch_size)
    check_size("seed", cfg.seed, minimum=0)
    name = _check_task(cfg.task)
    sampler_cfg = OmegaConf.to_container(cfg.sampler, resolve=True) if cfg.sampler else {}
    _check_sampler(sampler_cfg)
    device = torch.device(device) if device is not None else distributed.resolve_device(cfg.device)
    run = load_run(cfg.ckpt, device=device, use_ema=bool(cfg.use_ema))
    info = run.data_info
    plan = TASKS[name](cfg.task, run, n, sampler_cfg, device)
    seeds = draw_seeds(plan.n, torch.Generator().manual_seed(int(cfg.seed)))
    part = _partial_dir(out_dir, cfg, run, process)
    start = time.perf_counter()
    drawn = sample_in_batches(
        plan.make_batch,
        seeds,
        batch_size,
        process=process,
        partial_dir=part,
        progress=bool(cfg.progress),
        desc=f"generate ({name})",
    )
    wall = time.perf_counter() - start
    if not process.is_main:
        distributed.barrier()
        return {"n": plan.n, "nfe": drawn.nfe, "wall_time_s": wall}
    x = drawn.x
    npz = save_samples(out_dir / "samples.npz", x, info, plan.extra)
    png = _plot(x, run, out_dir / "samples.png", cfg, name)
    settings = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "n": plan.n,
        "batch_size": batch_size,
        "processes": process.world,
        "nfe": drawn.nfe,
        "nfe_per_sample_batch": drawn.nfe / max(1, drawn.batches),
        "resumed_batches": drawn.resumed_batches,
        "wall_time_s": wall,
        "device": str(device),
        "samples": str(npz),
        "grid": str(png) if png is not None else None,
    }
    write_json_atomic(out_dir / "settings.json", settings, default=str)
    shutil.rmtree(part, ignore_errors=True)
    distributed.barrier()
    return settings


def _plot(x: torch.Tensor, run, png: Path, cfg: DictConfig, name: str) -> Path | None:
    info = run.data_info
    if info.get("kind") == "image":
        rng = info.get("data_range") or (-1.0, 1.0)
        return atomic_write(png, lambda p: save_image_grid(x, p, rng, nrow=cfg.nrow))
    if x.dim() != 2 or x.shape[1] < 2:
        return None
    ref = data_items(run, "test", torch.arange(min(2000, x.shape[0] * 4)))
    return atomic_write(png, lambda p: save_scatter(x, p, "vector", reference=ref, title=name))
