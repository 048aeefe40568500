"""Data order and sharding: which items form the batch of step k on shard s, and the seeds of its
noise.

The global batch of step ``k`` is a function of ``(seed, k)`` alone: epoch ``e = k // (N // B)``
uses the permutation ``randperm(N)`` of a generator seeded with ``mix_seed(seed, e, DATA)``, and
the batch is its ``k mod (N // B)``-th slice of ``B`` items (drop_last). A step's batch is split
into ``S = world_size x grad_accum`` shards, shard ``s`` taking items ``s, s + S, ...``; shard
``s`` of step ``k`` draws its noise (loss times and Gaussians, label dropout, flips) from a
generator seeded with ``mix_seed(seed, k, s, tag)``. So a resumed run sees the batches and noise
of an uninterrupted one, and W ranks with grad_accum A see the shards of one process with W x A.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.data.batch import dataset_size, get_batch

# get_batch / dataset_size live in scoresde.data.batch (re-exported here for callers)
__all__ = ["DataOrder", "dataset_size", "drop_labels", "get_batch", "mix_seed"]

# stream tags: one per use of a seed, so no two uses share a stream
DATA, AUGMENT, NOISE, DROPOUT, SAMPLE, LIKELIHOOD, EVAL = (
    0xDA7A,
    0xF11B,
    0x1055,
    0xD0,
    0x5A3,
    0x11CE,
    0xE7A1,
)

_M64 = 0xFFFFFFFFFFFFFFFF


def mix_seed(*ints: int) -> int:
    """A 63-bit seed from integers (splitmix64-style: xor, multiply, xor-shift per value).

    The one way seeds are combined in training: distinct tuples give independent streams.
    """
    h = 0x9E3779B97F4A7C15
    for v in ints:
        h = (h ^ (int(v) & _M64)) * 0xBF58476D1CE4E5B9 & _M64
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class DataOrder:
    """Epoch-wise permutations of ``n`` items in global batches of ``batch`` (drop_last), ``shards``
    shards per batch (module docstring)."""

    def __init__(self, n: int, batch: int, seed: int, shards: int = 1):
        if batch > n:
            raise ValueError(f"training.batch_size={batch} exceeds the training set size {n}")
        if batch % shards:
            raise ValueError(
                f"batch size {batch} must be divisible by the number of shards {shards}"
            )
        self.n, self.batch, self.seed, self.shards = n, batch, seed, shards
        self.per_epoch = n // batch
        self._epoch: int | None = None
        self._perm: Tensor | None = None

    def epoch(self, step: int) -> int:
        return step // self.per_epoch

    def indices(self, step: int, shard: int | None = None) -> Tensor:
        """Item indices of the global batch of ``step`` [batch], or of one of its shards."""
        epoch, pos = divmod(step, self.per_epoch)
        if self._epoch != epoch:  # one permutation per epoch, cached
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, DATA))
            self._perm, self._epoch = torch.randperm(self.n, generator=g), epoch
        idx = self._perm[pos * self.batch : (pos + 1) * self.batch]
        return idx if shard is None else idx[shard :: self.shards]

    def generator(self, gen: torch.Generator, step: int, shard: int, tag: int) -> torch.Generator:
        """``gen`` reseeded for stream ``tag`` of ``(step, shard)``."""
        return gen.manual_seed(mix_seed(self.seed, step, shard, tag))


def drop_labels(
    y: Tensor, p: float, num_classes: int, per_sample: bool, generator: torch.Generator
) -> Tensor | None:
    """Label dropout for classifier-free guidance (Ho & Salimans 2022): each label becomes the null
    label ``num_classes`` with probability ``p`` (``per_sample``), else the whole batch loses its
    labels (returns None) with probability ``p``."""
    if p <= 0:
        return y
    if per_sample:
        drop = torch.rand(y.shape[0], generator=generator) < p
        return torch.where(drop, torch.full_like(y, num_classes), y)
    return None if float(torch.rand((), generator=generator)) < p else y
