"""Time-dependent ("noisy") classifiers p_t(y | x_t) for classifier guidance.

Song et al. 2021 (section 5, appendix I.1) and Dhariwal & Nichol 2021 train a classifier on the
perturbed marginals x_t ~ p_t and guide sampling with grad_x log p_t(y | x). The networks here
are deliberately small:

- vectors ``[D]``: a residual MLP whose hidden state receives the time embedding;
- images ``[C, H, W]``: three 3x3 convolution stages (the last two stride 2) with the time
  embedding added per channel, GroupNorm + SiLU, global average pooling, a linear head.

``forward(x [B, *dims], t [B]) -> logits [B, num_classes]``. With an ``sde`` the input is
preconditioned as x / sqrt(m(t)^2 + std(t)^2) (unit scale for unit-variance data under VP, VE
and sub-VP alike) and the time enters as -log SNR(t) = log(std(t) / m(t)); without one, t itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from scoresde.nets.embeddings import SinusoidalEmbedding
from scoresde.sde import SDE, batch_view

__all__ = ["NoisyClassifier"]


def _groups(ch: int) -> int:
    for g in (8, 4, 2, 1):
        if ch % g == 0:
            return g
    return 1


class _ResBlock(nn.Module):
    def __init__(self, hidden: int, emb_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.emb = nn.Linear(emb_dim, hidden)
        self.lin = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        return h + self.lin(torch.nn.functional.silu(self.norm(h) + self.emb(emb)))


class _ConvStage(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb_dim: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm = nn.GroupNorm(_groups(c_out), c_out)

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        h = self.conv(h) + self.emb(emb)[:, :, None, None]
        return torch.nn.functional.silu(self.norm(h))


class NoisyClassifier(nn.Module):
    """A small time-conditional classifier, logits [B, num_classes] of p_t(y | x).

    Args:
        data_shape: event shape, ``[D]`` (vectors) or ``[C, H, W]`` (images).
        num_classes: number of classes C >= 2.
        hidden: MLP width (vectors).
        num_blocks: residual MLP blocks (vectors).
        channels: base convolution width (images; stages use 1x, 2x, 2x).
        embed_dim: time-embedding width.
        sde: optional forward SDE for input preconditioning and -log SNR time input (not saved
            in the state dict; rebuild it from the run's config).
    """

    def __init__(
        self,
        data_shape: Sequence[int],
        num_classes: int,
        hidden: int = 128,
        num_blocks: int = 2,
        channels: int = 32,
        embed_dim: int = 64,
        sde: SDE | None = None,
    ):
        super().__init__()
        data_shape = tuple(int(s) for s in data_shape)
        if len(data_shape) not in (1, 3) or min(data_shape) < 1:
            raise ValueError(f"data_shape must be [D] or [C, H, W], got {list(data_shape)}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        for name, v in (
            ("hidden", hidden),
            ("num_blocks", num_blocks),
            ("channels", channels),
            ("embed_dim", embed_dim),
        ):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        self.data_shape = data_shape
        self.num_classes = num_classes
        self.sde = sde
        self.config: dict[str, Any] = {
            "data_shape": list(data_shape),
            "num_classes": num_classes,
            "hidden": hidden,
            "num_blocks": num_blocks,
            "channels": channels,
            "embed_dim": embed_dim,
        }
        # c = t in [0, 1] (scale 1000) or -log SNR in about [-10, 10] (scale 100)
        self.embed = SinusoidalEmbedding(embed_dim, input_scale=1000.0 if sde is None else 100.0)
        self.emb_mlp = nn.Sequential(
            nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim)
        )
        if len(data_shape) == 1:
            self.inp = nn.Linear(data_shape[0], hidden)
            self.blocks = nn.ModuleList(_ResBlock(hidden, embed_dim) for _ in range(num_blocks))
            self.head = nn.Sequential(
                nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, num_classes)
            )
        else:
            C = data_shape[0]
            self.blocks = nn.ModuleList(
                [
                    _ConvStage(C, channels, embed_dim, 1),
                    _ConvStage(channels, 2 * channels, embed_dim, 2),
                    _ConvStage(2 * channels, 2 * channels, embed_dim, 2),
                ]
            )
            self.head = nn.Linear(2 * channels, num_classes)

    def conditioning(self, t: Tensor) -> Tensor:
        """Time input c [B]: t, or -log SNR(t) with an SDE."""
        if self.sde is None:
            return t
        return -self.sde.log_snr(t)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        """Logits [B, num_classes] at (x [B, *dims], t [B])."""
        if tuple(x.shape[1:]) != self.data_shape:
            raise ValueError(
                f"x must have shape [B, {', '.join(map(str, self.data_shape))}], "
                f"got {list(x.shape)}"
            )
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if self.sde is not None:
            m, std = self.sde.marginal_coeffs(t)
            x = x / batch_view(torch.sqrt(m**2 + std**2), x)
        emb = self.emb_mlp(self.embed(self.conditioning(t)).to(x.dtype))
        if len(self.data_shape) == 1:
            h = self.inp(x)
            for blk in self.blocks:
                h = blk(h, emb)
            return self.head(h)
        h = x
        for blk in self.blocks:
            h = blk(h, emb)
        return self.head(h.mean(dim=(2, 3)))

    def extra_repr(self) -> str:
        return (
            f"data_shape={list(self.data_shape)}, num_classes={self.num_classes}, "
            f"sde={type(self.sde).__name__}"
        )
