"""Checkpoints: atomic writes (temp file + ``os.replace``) and ``weights_only`` loading.

A checkpoint is a dict with keys ``format`` (``"scoresde-checkpoint-v1"``), ``model``, ``ema``,
``optimizer``, ``step``, ``rng``, ``config`` (the resolved config as a plain dict) and
``data_info``. Only tensors and plain Python containers are stored, so
``torch.load(..., weights_only=True)`` can read it without executing code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from scoresde.io.atomic import save_torch_atomic

__all__ = ["FORMAT", "CheckpointError", "find_checkpoint", "load_checkpoint", "save_checkpoint"]

FORMAT = "scoresde-checkpoint-v1"
REQUIRED_KEYS = ("format", "model", "step", "config")

PathLike = str | os.PathLike


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or not a scoresde checkpoint of a known format."""


def save_checkpoint(path: PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a temp file in the same directory, then rename.

    A reader never sees a half-written file, and a crash while saving keeps the previous one. A
    failed write (no space left, read-only directory) raises :class:`scoresde.io.atomic.WriteError`
    (an ``OSError``) naming ``path`` and the cause; the previous checkpoint stays readable.
    """
    path = Path(path)
    state = dict(state)
    state.setdefault("format", FORMAT)
    save_torch_atomic(path, state)
    return path


def find_checkpoint(path: PathLike) -> Path:
    """Resolve a run directory (``<dir>/checkpoints/last.pt``), a checkpoints folder or a file."""
    p = Path(path)
    for cand in (p / "checkpoints" / "last.pt", p / "last.pt"):
        if p.is_dir() and cand.is_file():
            return cand
    if p.is_dir():
        raise CheckpointError(f"no checkpoint in {p}: expected {p / 'checkpoints' / 'last.pt'}")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    return p


def load_checkpoint(
    path: PathLike, map_location: str | torch.device | None = "cpu"
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` with ``torch.load(weights_only=True)``.

    ``path`` may be a run directory. Raises :class:`CheckpointError` when the file is missing,
    truncated/corrupt, or lacks the keys of format ``scoresde-checkpoint-v1``.
    """
    p = find_checkpoint(path)
    try:
        state = torch.load(p, map_location=map_location, weights_only=True)
    except (
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        OSError,
        ValueError,
    ) as e:
        raise CheckpointError(
            f"corrupt or unreadable checkpoint {p}: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{p} is not a scoresde checkpoint (got a {type(state).__name__})")
    fmt = state.get("format")
    if fmt != FORMAT:
        raise CheckpointError(f"{p} has format {fmt!r}; this version reads {FORMAT!r}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{p} lacks checkpoint keys {missing}")
    return state
