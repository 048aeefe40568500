"""Several processes without DistributedDataParallel: shard items over ranks, gather on rank 0.

``torchrun --nproc_per_node=K -m scoresde.<cmd>`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`init` joins the process group (gloo on CPU, NCCL on CUDA). Work is split
by item index, not by batch: rank ``r`` of ``W`` takes items ``r, r + W, r + 2W, ...``
(:func:`shard`), so every item is computed exactly as one process would (its own seed, its own
noise stream) and :func:`gather` puts the results back in item order on rank 0.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = [
    "ProcessInfo",
    "barrier",
    "broadcast_object",
    "gather",
    "gather_objects",
    "init",
    "interleave",
    "process_info",
    "resolve_device",
    "shard",
    "shard_slice",
]


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place in the job: ``rank`` of ``world`` (``local_rank`` on its node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and logs."""
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {v!r}") from None


def process_info() -> ProcessInfo:
    """Rank / world from the initialised process group, else from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return ProcessInfo(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK={rank} and WORLD_SIZE={world}: need 0 <= RANK < WORLD_SIZE")
    return ProcessInfo(rank, world, _env_int("LOCAL_RANK", rank))


def resolve_device(name: str | None, local_rank: int = 0) -> torch.device:
    """``cpu`` | ``cuda`` | ``cuda:N`` | ``auto`` (cuda when available) as a ``torch.device``.

    A CUDA device that is not there is a ``ValueError`` naming ``device`` and the choices.
    With several processes, ``cuda`` / ``auto`` mean this process's ``cuda:<local_rank>``.
    """
    name = "cpu" if name is None else str(name)
    bad = f"device must be one of cpu, cuda, cuda:N or auto, got {name!r}"
    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto":
        name = "cuda" if have else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not have:
            raise ValueError(
                f"device={name} but CUDA is not available here; use device=cpu or device=auto"
            )
        index = local_rank if name == "cuda" else name.split(":", 1)[1]
        try:
            index = int(index)
        except ValueError:
            raise ValueError(bad) from None
        if not 0 <= index < have:
            raise ValueError(
                f"device={name} does not exist: this machine has {have} CUDA device(s) "
                f"(cuda:0 .. cuda:{have - 1})"
            )
        return torch.device("cuda", index)
    raise ValueError(bad)


def init(device: torch.device | None = None) -> ProcessInfo:
    """Join the torchrun process group when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA)."""
    info = process_info()
    if info.world > 1 and not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        info = process_info()
    return info


def shard_slice(n: int, info: ProcessInfo | None = None) -> slice:
    """The items ``rank, rank + world, ...`` of ``range(n)`` as a strided slice."""
    info = info or process_info()
    return slice(info.rank, n, info.world)


def shard(n: int, info: ProcessInfo | None = None) -> torch.Tensor:
    """Indices of this rank's share of ``n`` items (``rank::world``), as a long tensor."""
    s = shard_slice(n, info)
    return torch.arange(n)[s]


def barrier() -> None:
    """Wait for every rank (no-op on one process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (the object itself on one process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` as a list ordered by rank on rank 0; ``None`` elsewhere."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    rank = dist.get_rank()
    out: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def gather(x: torch.Tensor, n: int) -> torch.Tensor | None:
    """Reassemble item-sharded rows: rank r's ``x`` holds items ``r::world`` of ``n``.

    Returns the ``[n, ...]`` tensor in item order on rank 0 (``None`` on other ranks). Rows travel
    as CPU tensors through :func:`gather_objects`, so it works with gloo and any dtype.
    """
    parts = gather_objects(x.detach().cpu())
    if parts is None:
        return None
    return interleave(parts, n)


def interleave(parts: Sequence[torch.Tensor], n: int) -> torch.Tensor:
    """Inverse of :func:`shard`: ``parts[r]`` holds items ``r::len(parts)`` of ``n``."""
    world = len(parts)
    if sum(int(p.shape[0]) for p in parts) != n:
        raise ValueError(
            f"gathered {sum(int(p.shape[0]) for p in parts)} rows from {world} ranks, expected {n}"
        )
    out = parts[0].new_empty((n, *parts[0].shape[1:]))
    for r, p in enumerate(parts):
        if p.shape[0]:  # a rank with no items (n < world) sends an empty tensor
            out[r::world] = p
    return out
