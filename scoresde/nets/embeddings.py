"""Noise-level (time) embeddings and the conditioning MLP shared by the score networks.

Both embeddings map a scalar conditioning value ``c`` [B] to features [B, dim]:

- :class:`SinusoidalEmbedding` -- the Transformer / DDPM positional embedding used by DDPM++
  (Vaswani et al. 2017; Ho et al. 2020): ``[sin(s c w_j), cos(s c w_j)]`` with
  ``w_j = max_period^(-j / (dim/2 - 1))``. ``input_scale`` s defaults to 1000, so ``c = t`` in
  [0, 1] spans the range of DDPM's integer timesteps (the reference feeds ``999 t``).
- :class:`GaussianFourierEmbedding` -- random Fourier features used by NCSN++ (Tancik et al. 2020;
  Song et al. 2021): ``[sin(2 pi W c), cos(2 pi W c)]`` with fixed ``W ~ N(0, scale^2)``
  (``scale = 16`` in NCSN++), stored as a buffer so it is saved with the model but never trained.

:class:`TimeConditioning` wraps either embedding in the two-layer MLP of DDPM++ / NCSN++
(``Linear -> SiLU -> Linear``) and optionally adds a class-label embedding with a "null" label
(index ``num_classes``) used when ``y is None`` (classifier-free guidance).

:func:`timestep_embedding` and :class:`FourierProjection` are the Score SDE release's versions of
the two, float32 operation for operation (the phases of 16-scale Fourier features reach ~1e3, so
the order of the multiplications shows in float32): NCSN++ / DDPM++ use them to match it exactly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "TIME_EMBEDDINGS",
    "FourierProjection",
    "GaussianFourierEmbedding",
    "SinusoidalEmbedding",
    "TimeConditioning",
    "check_labels",
    "make_time_embedding",
    "timestep_embedding",
]

TIME_EMBEDDINGS = ("fourier", "sinusoidal")


def _as_batch(c: Tensor, batch: int | None = None) -> Tensor:
    c = torch.as_tensor(c)
    if c.dim() == 0:
        c = c.reshape(1).expand(batch if batch is not None else 1)
    if c.dim() != 1:
        raise ValueError(f"c must have shape [B], got {tuple(c.shape)}")
    return c


class SinusoidalEmbedding(nn.Module):
    """Transformer sinusoidal embedding of ``input_scale * c``; c [B] -> [B, dim] (dim even)."""

    def __init__(self, dim: int, input_scale: float = 1000.0, max_period: float = 10000.0):
        super().__init__()
        if dim < 4 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 4, got {dim!r}")
        self.dim = dim
        self.input_scale = float(input_scale)
        half = dim // 2
        freqs = torch.exp(
            -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - 1)
        )
        self.register_buffer("freqs", freqs.to(torch.get_default_dtype()), persistent=False)

    def forward(self, c: Tensor) -> Tensor:
        c = _as_batch(c)
        arg = (self.input_scale * c)[:, None] * self.freqs.to(c.dtype)[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


class GaussianFourierEmbedding(nn.Module):
    """Gaussian random Fourier features ``[sin(2 pi W c), cos(2 pi W c)]``; c [B] -> [B, dim].

    ``W`` ([dim/2], N(0, scale^2)) is fixed at construction (``seed`` makes it reproducible).
    """

    def __init__(self, dim: int, scale: float = 16.0, seed: int | None = 0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even integer >= 2, got {dim!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        self.dim = dim
        self.scale = float(scale)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        W = torch.randn(dim // 2, generator=gen, dtype=torch.float64, device="cpu") * scale
        self.register_buffer("W", W.to(torch.get_default_dtype()))

    def forward(self, c: Tensor) -> Tensor:
        c = _as_batch(c)
        arg = 2 * math.pi * c[:, None] * self.W.to(c.dtype)[None]
        return torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)


def timestep_embedding(timesteps: Tensor, dim: int, max_positions: float = 10000.0) -> Tensor:
    """DDPM's sinusoidal embedding ``[sin(s w_j), cos(s w_j)]``,
    ``w_j = max_positions^(-j/(d/2-1))``, of the release's labels ``s`` (999 t); computed in
    float32 as the release does (float64 labels keep float64)."""
    half = dim // 2
    dtype = torch.float64 if timesteps.dtype == torch.float64 else torch.float32
    freqs = torch.exp(
        torch.arange(half, dtype=dtype, device=timesteps.device)
        * -(math.log(max_positions) / (half - 1))
    )
    arg = timesteps.to(dtype)[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(arg), torch.cos(arg)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class FourierProjection(nn.Module):
    """Gaussian Fourier features ``[sin(2 pi W s), cos(2 pi W s)]`` of s = log sigma.

    The frequencies are drawn as W ~ N(0, scale^2).

    ``W`` is a frozen ``nn.Parameter`` as in the release (counted among the parameters, never
    trained); :class:`~scoresde.nets.embeddings.GaussianFourierEmbedding` is the buffer variant.
    """

    def __init__(self, embedding_size: int = 256, scale: float = 1.0):
        super().__init__()
        self.W = nn.Parameter(torch.randn(embedding_size) * scale, requires_grad=False)

    def forward(self, s: Tensor) -> Tensor:
        proj = s[:, None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


def make_time_embedding(kind: str, dim: int, fourier_scale: float = 16.0) -> nn.Module:
    """Build a ``"fourier"`` or ``"sinusoidal"`` embedding with ``dim`` output features."""
    if kind == "fourier":
        return GaussianFourierEmbedding(dim, scale=fourier_scale)
    if kind == "sinusoidal":
        return SinusoidalEmbedding(dim)
    raise ValueError(f"time_embedding must be one of {TIME_EMBEDDINGS}, got {kind!r}")


def check_labels(y: Tensor, num_classes: int | None, batch: int) -> Tensor:
    """Validate class labels y [B] (or a 0-d label, broadcast) for a net with ``num_classes``."""
    if num_classes is None:
        raise ValueError("labels y were given but the network was built with num_classes=None")
    y = torch.as_tensor(y)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must be an integer tensor of class labels, got dtype {y.dtype}")
    y = y.reshape(-1)
    if y.shape[0] == 1 and batch != 1:
        y = y.expand(batch)
    if y.shape[0] != batch:
        raise ValueError(f"y must have shape [B] = [{batch}], got {tuple(y.shape)}")
    # index num_classes is the null label (classifier-free guidance drops labels per sample)
    if y.numel() and (int(y.min()) < 0 or int(y.max()) > num_classes):
        raise ValueError(
            f"labels y must lie in [0, {num_classes - 1}], or be {num_classes} for the null label "
            f"(num_classes={num_classes})"
        )
    return y.long()


class TimeConditioning(nn.Module):
    """Embedding of c (+ optional label) -> conditioning vector [B, out_dim].

    ``emb(c) -> Linear(embed_dim, out_dim) -> SiLU -> Linear(out_dim, out_dim)``, plus
    ``nn.Embedding(num_classes + 1, out_dim)[y]`` when ``num_classes`` is set; ``y=None`` uses the
    null label ``num_classes``.
    """

    def __init__(
        self,
        embed_dim: int,
        out_dim: int,
        time_embedding: str = "fourier",
        fourier_scale: float = 16.0,
        num_classes: int | None = None,
    ):
        super().__init__()
        self.embed = make_time_embedding(time_embedding, embed_dim, fourier_scale)
        self.time_embedding = time_embedding
        self.mlp = nn.Sequential(
            nn.Linear(embed_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim)
        )
        if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 1):
            raise ValueError(f"num_classes must be None or an integer >= 1, got {num_classes!r}")
        self.num_classes = None if num_classes is None else int(num_classes)
        self.label_embed = (
            nn.Embedding(self.num_classes + 1, out_dim) if self.num_classes is not None else None
        )
        for lin in (self.mlp[0], self.mlp[2]):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, c: Tensor, y: Tensor | None, batch: int, dtype: torch.dtype) -> Tensor:
        c = _as_batch(c, batch)
        if c.shape[0] != batch:
            raise ValueError(f"c must have shape [B] = [{batch}], got {tuple(c.shape)}")
        emb = self.mlp(self.embed(c.to(dtype)))
        if self.label_embed is not None:
            if y is None:
                y = torch.full((batch,), self.num_classes, dtype=torch.long, device=emb.device)
            else:
                y = check_labels(y, self.num_classes, batch).to(emb.device)
            emb = emb + self.label_embed(y)
        elif y is not None:
            check_labels(y, None, batch)
        return emb
