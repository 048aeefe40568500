"""The one sample-in-batches loop, shared by ``generate`` and ``evaluate``, sharded over ranks.

Item ``i`` of ``n`` has its own seed ``seeds[i]``; rank ``r`` of ``W`` draws the items
``r, r + W, ...`` (:func:`scoresde.io.distributed.shard`) in batches of ``batch_size`` and rank 0
gathers them back in item order. Since the sampler keys each sample's noise by its seed, the
result equals a one-process run whatever ``W`` and ``batch_size`` (every method except ``sde``,
whose Brownian motion is batch-wide).

With ``partial_dir`` each finished batch is written atomically to
``<partial_dir>/rank<r>-of<W>-batch<k>.pt``; a rerun with the same settings (the caller checks
them) loads those and draws only the rest, so a killed run resumes per shard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from scoresde.io import distributed
from scoresde.io.atomic import save_torch_atomic
from scoresde.io.distributed import ProcessInfo

__all__ = ["BatchFn", "Drawn", "sample_in_batches"]

# make_batch(item indices [b], their seeds [b]) -> (samples [b, *shape], NFE of this batch)
BatchFn = Callable[[Tensor, Tensor], tuple[Tensor, int]]


@dataclass
class Drawn:
    """The gathered samples (rank 0; ``None`` elsewhere) and the NFE summed over all batches."""

    x: Tensor | None
    nfe: int
    batches: int
    resumed_batches: int


def _load_chunk(path: Path, idx: Tensor) -> tuple[Tensor, int] | None:
    try:
        chunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable chunk is redrawn, never trusted
        return None
    if not isinstance(chunk, dict) or not torch.equal(chunk.get("idx", torch.empty(0)), idx):
        return None
    return chunk["x"], int(chunk["nfe"])


def sample_in_batches(
    make_batch: BatchFn,
    seeds: Tensor,
    batch_size: int,
    *,
    process: ProcessInfo | None = None,
    partial_dir: str | Path | None = None,
    progress: bool = False,
    desc: str = "sampling",
) -> Drawn:
    """Draw ``len(seeds)`` samples, this rank's share in batches; gather on rank 0."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    n = int(seeds.shape[0])
    process = process or distributed.process_info()
    mine = distributed.shard(n, process)
    starts = range(0, int(mine.numel()), batch_size)
    if progress and process.is_main:
        starts = tqdm(starts, desc=desc, unit="batch", leave=False)
    xs, nfe, resumed = [], 0, 0
    for k, i0 in enumerate(starts):
        idx = mine[i0 : i0 + batch_size]
        path = None
        if partial_dir is not None:
            path = Path(partial_dir) / f"rank{process.rank}-of{process.world}-batch{k}.pt"
            got = _load_chunk(path, idx) if path.is_file() else None
            if got is not None:
                xs.append(got[0])
                nfe += got[1]
                resumed += 1
                continue
        x, b_nfe = make_batch(idx, seeds[idx])
        x = x.detach().float().cpu()
        if path is not None:
            save_torch_atomic(path, {"idx": idx, "x": x, "nfe": int(b_nfe)})
        xs.append(x)
        nfe += int(b_nfe)
    local = torch.cat(xs) if xs else torch.empty(0)
    x_all = distributed.gather(local, n) if process.world > 1 else local
    totals = distributed.gather_objects((nfe, len(xs), resumed))
    if totals is None:
        return Drawn(None, nfe, len(xs), resumed)
    return Drawn(x_all, *(sum(t[i] for t in totals) for i in range(3)))
