"""Residual MLP score network for vector data (toy 2-D sets, low-dimensional mixtures).

    h = Linear(x)
    repeat num_blocks:  h = h + Linear(Dropout(SiLU(Linear(SiLU(Norm(h))) + Dense(SiLU(emb)))))
    out = Linear(SiLU(Norm(h)))          (zero-initialised: the net starts at output 0)

``emb`` is the time (+ label) conditioning vector of
:class:`~scoresde.nets.embeddings.TimeConditioning`; it is projected into every block, as the UNet
does (Ho et al. 2020; Song et al. 2021).
"""

from __future__ import annotations

from torch import Tensor, nn

from scoresde.nets.embeddings import TimeConditioning
from scoresde.nets.layers import linear

__all__ = ["MLP"]

NORMS = ("layer", "group", "none")


def _norm(kind: str, dim: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(dim)
    if kind == "group":
        return nn.GroupNorm(min(32, max(1, dim // 4)), dim)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {NORMS}, got {kind!r}")


class _ResBlock(nn.Module):
    def __init__(self, hidden: int, emb_dim: int, dropout: float, norm: str):
        super().__init__()
        self.norm = _norm(norm, hidden)
        self.lin1 = linear(hidden, hidden)
        self.emb = linear(emb_dim, hidden)
        self.drop = nn.Dropout(dropout)
        self.lin2 = linear(hidden, hidden)
        self.act = nn.SiLU()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        a = self.lin1(self.act(self.norm(h))) + self.emb(self.act(emb))
        return h + self.lin2(self.drop(self.act(a)))


class MLP(nn.Module):
    """Time-conditioned residual MLP, ``forward(x [B, D], c [B], y=None) -> [B, D]``.

    Args:
        dim: data dimension D.
        hidden: width of the residual stream.
        num_blocks: number of residual blocks.
        embed_dim: size of the time embedding (before its MLP, which outputs ``hidden``).
        time_embedding: ``"fourier"`` (Gaussian Fourier features, NCSN++) or ``"sinusoidal"``
            (DDPM++).
        num_classes: enables label conditioning (``nn.Embedding(num_classes + 1, hidden)``,
            ``y=None`` means the null label ``num_classes``).
        dropout: dropout rate inside the blocks.
        norm: ``"layer"`` (LayerNorm), ``"group"`` (GroupNorm) or ``"none"``.
        fourier_scale: std of the Fourier frequencies.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        num_blocks: int = 3,
        embed_dim: int = 128,
        time_embedding: str = "fourier",
        num_classes: int | None = None,
        dropout: float = 0.0,
        norm: str = "layer",
        fourier_scale: float = 16.0,
    ):
        super().__init__()
        for name, val in (("dim", dim), ("hidden", hidden), ("embed_dim", embed_dim)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        if isinstance(num_blocks, bool) or not isinstance(num_blocks, int) or num_blocks < 0:
            raise ValueError(f"num_blocks must be an integer >= 0, got {num_blocks!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        _norm(norm, hidden)  # validate early
        self.dim = dim
        self.num_classes = num_classes
        self.cond = TimeConditioning(embed_dim, hidden, time_embedding, fourier_scale, num_classes)
        self.inp = linear(dim, hidden)
        self.blocks = nn.ModuleList(
            _ResBlock(hidden, hidden, dropout, norm) for _ in range(num_blocks)
        )
        self.out_norm = _norm(norm, hidden)
        self.out = linear(hidden, dim, zero=True)
        self.act = nn.SiLU()

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None) -> Tensor:
        """x: [B, D]; c: [B] conditioning (see ScoreModel); y: [B] labels or None -> [B, D]."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape [B, {self.dim}], got {tuple(x.shape)}")
        emb = self.cond(c.to(x.device), y, x.shape[0], x.dtype)
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.act(self.out_norm(h)))
