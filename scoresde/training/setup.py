"""Run setup shared by the trainers: the process group of a ``torchrun`` launch, and
the checks of the run-level config keys (``seed``, ``logger``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from scoresde.io import distributed
from scoresde.io.loggers import LOGGER_NAMES, WANDB_MODES

__all__ = ["check_run_config", "init_processes", "probe_null_label"]


def check_run_config(cfg: Any) -> None:
    """``seed`` is an integer; ``logger.name`` / ``logger.mode`` are known (ValueError naming
    them)."""
    if isinstance(cfg.get("seed"), bool) or not isinstance(cfg.get("seed"), int):
        raise TypeError(f"seed must be an integer, got {cfg.get('seed')!r}")
    lg = cfg.get("logger") or {}
    name = lg.get("name", "none")
    if name not in LOGGER_NAMES:
        raise ValueError(f"logger.name must be one of {list(LOGGER_NAMES)}, got {name!r}")
    if name == "wandb":
        mode = os.environ.get("WANDB_MODE") or lg.get("mode", "offline")
        if mode not in WANDB_MODES + ("dryrun", "run"):
            raise ValueError(f"logger.mode must be one of {list(WANDB_MODES)}, got {mode!r}")


def init_processes(
    device: torch.device, run_dir: str | Path
) -> tuple[int, int, torch.device, bool, Path]:
    """``(rank, world, device, owns_group, run_dir)`` from the ``torchrun`` environment.

    With several processes the group is created (nccl on CUDA, gloo on CPU) unless one exists,
    each rank takes its local GPU, and every rank uses rank 0's run directory.
    """
    info = distributed.process_info()
    if info.world == 1:
        return info.rank, 1, device, False, Path(run_dir)
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    own = not dist.is_initialized()
    info = distributed.init(device)
    return info.rank, info.world, device, own, Path(distributed.broadcast_object(str(run_dir)))


def probe_null_label(
    model: torch.nn.Module, shape: Sequence[int], num_classes: int, device: torch.device
) -> bool:
    """Does the net accept ``y == num_classes`` (a per-sample null label)? Else label dropout
    drops the labels of the whole batch."""
    x = torch.zeros(1, *shape, device=device)
    t = torch.full((1,), 0.5, device=device)
    try:
        with torch.no_grad():
            model(x, t, y=torch.full((1,), num_classes, dtype=torch.long, device=device))
        return True
    except (ValueError, IndexError):
        return False
