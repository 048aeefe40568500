"""State of a training run and resume: what a checkpoint holds, how it is restored, and what may
change between the run that wrote it and the run that resumes it.

A checkpoint (``scoresde.io.checkpoint`` format) holds the raw and EMA weights, the optimizer, the
step, the global RNG states (torch, CUDA, Python), the resolved config and the data description.
With the per-step seeded batches and noise (:mod:`scoresde.training.batches`), restoring these makes
a resumed run bit-identical to an uninterrupted one on CPU.

Resuming with a config that differs from the saved one in anything that changes the model, the
SDE, the data, the loss or the optimisation is refused naming the keys (:func:`check_config_drift`);
only :data:`MAY_CHANGE_ON_RESUME` may differ.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from scoresde.io.checkpoint import FORMAT, CheckpointError, load_checkpoint

__all__ = [
    "DRIFT_GROUPS",
    "MAY_CHANGE_ON_RESUME",
    "check_config_drift",
    "get_rng_state",
    "resume_path",
    "set_rng_state",
    "training_state",
]

DRIFT_GROUPS = ("seed", "model", "sde", "data", "training", "task")
TYPED_GROUPS = ("training", "task")  # schemas in scoresde/training/config.py
# keys (or key prefixes ending in ".") under DRIFT_GROUPS that may differ on resume
MAY_CHANGE_ON_RESUME = (
    "training.steps",
    "training.resume",
    "training.progress",
    "training.plot",
    "training.compile",
    "training.channels_last",
    "training.log_every",
    "training.checkpoint_every",
    "training.snapshot_every",
    "training.eval_every",
    "training.eval_n",
    "training.sample_every",
    "training.sample_n",
    "training.likelihood_every",
    "training.likelihood_n",
    "training.final_sample_n",
    "training.final_likelihood_n",
    "training.likelihood.",
    "data.root",
)


def resume_path(resume: str | None, run_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``auto`` -> ``<run_dir>/checkpoints/last.pt`` if it exists;
    a run directory or file; ``None`` / ``never`` -> none."""
    if resume in (None, "never", "false", "False"):
        return None
    if resume == "auto":
        p = run_dir / "checkpoints" / "last.pt"
        return p if p.is_file() else None
    p = Path(str(resume))
    return p / "checkpoints" / "last.pt" if p.is_dir() else p


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, Mapping):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _may_change(key: str) -> bool:
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in MAY_CHANGE_ON_RESUME)


def check_config_drift(saved: Mapping[str, Any], now: Mapping[str, Any], path: Path) -> None:
    """Raise CheckpointError listing the keys of :data:`DRIFT_GROUPS` whose values differ between
    the checkpoint's config ``saved`` and the requested one ``now`` (both resolved plain dicts)."""
    a = {k: v for g in DRIFT_GROUPS if g in saved for k, v in _flat({g: saved[g]}).items()}
    b = {k: v for g in DRIFT_GROUPS if g in now for k, v in _flat({g: now[g]}).items()}
    missing = object()
    # the typed groups may gain or lose keys between versions: compare the keys both configs have;
    # in the free-form groups (model, sde, data: constructor arguments) a key added or dropped
    # counts
    keys = set(a) & set(b) | {k for k in set(a) ^ set(b) if k.split(".")[0] not in TYPED_GROUPS}
    diff = [
        k for k in sorted(keys) if not _may_change(k) and a.get(k, missing) != b.get(k, missing)
    ]
    if diff:
        shown = ", ".join(
            f"{k} (checkpoint: {a.get(k, '<unset>')!r}, requested: {b.get(k, '<unset>')!r})"
            for k in diff[:12]
        )
        raise CheckpointError(
            f"checkpoint {path} does not fit the requested config: it was trained with different "
            f"{shown}{' ...' if len(diff) > 12 else ''}. Resume with the run's own settings, or "
            "start a new run directory; keys that may change on resume: "
            + ", ".join(
                k.rstrip(".") + ("*" if k.endswith(".") else "") for k in MAY_CHANGE_ON_RESUME
            )
        )


def get_rng_state(device: torch.device) -> dict[str, Any]:
    """The global RNG states (torch CPU, CUDA, Python) as checkpointable lists and tensors."""
    rng: dict[str, Any] = {"torch": torch.get_rng_state(), "python": _lists(random.getstate())}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return rng


def set_rng_state(rng: Mapping[str, Any], device: torch.device) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state_all(list(rng["cuda"]))
    if "python" in rng:
        random.setstate(_tuples(rng["python"]))


def training_state(
    model: torch.nn.Module,
    ema_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    config: dict[str, Any],
    data_info: dict[str, Any],
    data_order: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    """The checkpoint dict of a training run at ``step``."""
    return {
        "format": FORMAT,
        "model": model.state_dict(),
        "ema": ema_model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "rng": get_rng_state(device),
        "config": config,
        "data_info": data_info,
        "data_order": data_order,
    }


def load_training_state(
    path: Path,
    model: torch.nn.Module,
    ema_model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    device: torch.device,
) -> int:
    """Restore weights, EMA, optimizer and RNG states from ``path`` (after the drift check);
    returns the step."""
    state = load_checkpoint(path, map_location="cpu")
    check_config_drift(state["config"], config, path)
    try:
        model.load_state_dict(state["model"])
        ema_model.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"checkpoint {path} does not fit this config's model/optimizer: {e}"
        ) from e
    set_rng_state(state.get("rng") or {}, device)
    return int(state["step"])


def _lists(v: Any) -> Any:
    return [_lists(a) for a in v] if isinstance(v, tuple) else v


def _tuples(v: Any) -> Any:
    return tuple(_tuples(a) for a in v) if isinstance(v, list) else v
