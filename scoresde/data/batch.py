"""Vectorised item access for any data set: the one get_batch fallback, used by the layers above."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["dataset_size", "get_batch"]


def get_batch(
    dataset: Any, idx: Tensor | Sequence[int], generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor | None]:
    """Items ``idx`` of ``dataset`` as ``(x [B, *dims], y [B])``.

    ``dataset`` is a scoresde data set (vectorised ``get_batch(idx[, generator])``; the generator
    draws its augmentation), any map-style data set of ``(x, y)`` items (``(x,)`` items give
    ``y = None``), or an ``(x, y)`` pair of tensors.
    """
    idx = torch.as_tensor(idx, dtype=torch.long)
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        x, y = (torch.as_tensor(v) for v in dataset)
        return x[idx], y[idx]
    fn = getattr(dataset, "get_batch", None)
    if fn is not None:
        if generator is not None and _takes_generator(type(dataset)):
            return fn(idx, generator=generator)
        return fn(idx)
    if not hasattr(dataset, "__getitem__"):
        raise TypeError(
            "dataset must have get_batch(idx) -> (x, y), items (x, y), or be an (x, y) pair; "
            f"got {type(dataset).__name__}"
        )
    items = [dataset[int(i)] for i in idx]
    x = torch.stack([torch.as_tensor(it[0]) for it in items])
    if items and len(items[0]) < 2:
        return x, None
    return x, torch.as_tensor([int(it[1]) for it in items])


@functools.lru_cache(maxsize=64)
def _takes_generator(cls: type) -> bool:
    return "generator" in inspect.signature(cls.get_batch).parameters


def dataset_size(dataset: Any) -> int:
    """Number of items of a data set or of an ``(x, y)`` pair."""
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        return int(torch.as_tensor(dataset[0]).shape[0])
    return len(dataset)
