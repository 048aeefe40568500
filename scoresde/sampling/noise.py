"""Noise sources for the samplers: per-sample keyed streams (reproducible, chunk independent) or
the global torch RNG (fastest, batch-wise).

With a ``generator`` (or explicit ``seeds``) every sample ``b`` owns a 62-bit seed ``seed_b`` and
each Gaussian the sampler draws for it is a pure function of ``(seed_b, draw counter, element
index)``: a counter-based generator (an integer hash in the spirit of Philox, Salmon et al. 2011)
feeding the Box-Muller transform. The seeds are drawn from the generator, one per sample, in
order; so sampling 100 points with ``Generator().manual_seed(0)`` gives the same points as two
calls of 50 with one generator seeded the same way (for CPU generators, whose ``randint`` stream
does not depend on how it is split), and the same points on every device up to floating point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["GlobalNoise", "KeyedNoise", "NoiseSource", "draw_seeds", "make_noise"]

_MASK = 0xFFFFFFFF
_MUL = 0x45D9F3B  # < 2^31, so every product of a 32-bit value fits in int64 (no overflow)
_GOLDEN = 0x9E3779B9
_SEED_BOUND = 2**62


def _mix(x: Tensor) -> Tensor:
    """A 32-bit integer finalizer, int64 in [0, 2^32).

    x ^= x >> 16; x *= 0x45d9f3b; twice; x ^= x >> 16.
    """
    x = ((x ^ (x >> 16)) * _MUL) & _MASK
    x = ((x ^ (x >> 16)) * _MUL) & _MASK
    return x ^ (x >> 16)


def draw_seeds(n: int, generator: torch.Generator | None = None, device=None) -> Tensor:
    """``n`` per-sample seeds in [0, 2^62) drawn in order from ``generator`` (int64 [n])."""
    gdev = generator.device if generator is not None else "cpu"
    seeds = torch.randint(0, _SEED_BOUND, (n,), generator=generator, device=gdev, dtype=torch.long)
    return seeds.to(device) if device is not None else seeds


class KeyedNoise:
    """Standard normal noise keyed by per-sample seeds and a draw counter.

    Args:
        seeds: [B] integer seeds (one per sample).
        event_shape: the per-sample shape ``dims``.
    Each call of :meth:`normal` advances the (batch-independent) draw counter by one.
    """

    chunk_independent = True

    def __init__(self, seeds: Tensor, event_shape: Sequence[int], dtype: torch.dtype, device):
        seeds = torch.as_tensor(seeds, dtype=torch.long, device=device).reshape(-1)
        self.batch = seeds.shape[0]
        self.event_shape = tuple(event_shape)
        self.dtype, self.device = dtype, torch.device(device)
        self._lo = seeds & _MASK
        self._hi = (seeds >> 32) & _MASK
        self.numel = math.prod(self.event_shape)
        half = (self.numel + 1) // 2
        self._j1 = (
            torch.arange(half, device=device, dtype=torch.long) * 2
        )  # Box-Muller radius draws
        self._j2 = self._j1 + 1  # angle draws
        self.counter = 0

    def _uniform(self, k1: Tensor, k2: Tensor, j: Tensor) -> Tensor:
        h = _mix(_mix((j[None] + k1[:, None]) & _MASK) ^ k2[:, None])
        return (h.to(self.dtype) + 0.5) * 2.0**-32

    def normal(self, counter: Tensor | None = None, index: Tensor | None = None) -> Tensor:
        """Draw [B, *dims] (or [len(index), *dims]) standard normals.

        ``counter``/``index`` (both [B']) select per-sample draw counters and samples (used by the
        per-sample adaptive solver); by default the shared counter is used and advanced.
        """
        lo, hi = (self._lo, self._hi) if index is None else (self._lo[index], self._hi[index])
        if counter is None:
            c = torch.full_like(lo, self.counter)
            self.counter += 1
        else:
            c = counter.to(device=lo.device, dtype=torch.long)
        k1 = _mix(lo ^ _mix((c * _GOLDEN + 1) & _MASK))
        k2 = _mix(hi ^ _mix((k1 + c + _GOLDEN) & _MASK))
        u1 = self._uniform(k1, k2, self._j1)
        u2 = self._uniform(k1, k2, self._j2)
        r = torch.sqrt(-2.0 * torch.log(u1))
        ang = (2.0 * math.pi) * u2
        z = torch.cat([r * torch.cos(ang), r * torch.sin(ang)], dim=1)[:, : self.numel]
        return z.reshape(lo.shape[0], *self.event_shape)


class GlobalNoise:
    """Noise from torch's global RNG, drawn batch-wise (fast; depends on the batch split)."""

    chunk_independent = False

    def __init__(self, batch: int, event_shape: Sequence[int], dtype: torch.dtype, device):
        self.batch = batch
        self.event_shape = tuple(event_shape)
        self.dtype, self.device = dtype, torch.device(device)
        self.counter = 0

    def normal(self, counter: Tensor | None = None, index: Tensor | None = None) -> Tensor:
        n = self.batch if index is None else int(index.shape[0])
        self.counter += 1
        return torch.randn((n, *self.event_shape), dtype=self.dtype, device=self.device)


NoiseSource = KeyedNoise | GlobalNoise


def make_noise(
    shape: Sequence[int],
    generator: torch.Generator | None,
    seeds: Tensor | Sequence[int] | None,
    dtype: torch.dtype,
    device,
) -> NoiseSource:
    """KeyedNoise from ``seeds`` or ``generator``, else GlobalNoise."""
    B, dims = int(shape[0]), tuple(shape[1:])
    if seeds is not None:
        seeds = torch.as_tensor(seeds)
        if seeds.dim() != 1 or seeds.shape[0] != B or seeds.is_floating_point():
            raise ValueError(
                f"seeds must be {B} integers (one per sample), got shape {tuple(seeds.shape)}"
            )
        return KeyedNoise(seeds, dims, dtype, device)
    if generator is not None:
        return KeyedNoise(draw_seeds(B, generator, device), dims, dtype, device)
    return GlobalNoise(B, dims, dtype, device)
