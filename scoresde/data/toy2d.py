"""2-D toy distributions (checkerboard, moons, swissroll, rings, gmm8) as in-memory datasets.

Every generator returns ``x`` of shape ``[n, 2]`` (float32, roughly zero-mean with unit scale)
and integer labels ``y`` of shape ``[n]`` (the mixture component / ring / moon / square colour),
drawn from an explicit ``torch.Generator`` so that a seed fixes the data set.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from scoresde.checks import check_positive, check_size

__all__ = ["TOY2D", "Toy2D", "make_toy2d"]


def _checkerboard(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """4x4 checkerboard on [-2, 2]^2, the 8 filled squares equally likely."""
    x1 = torch.rand(n, generator=g) * 4 - 2
    x2_ = torch.rand(n, generator=g) - torch.randint(0, 2, (n,), generator=g).float() * 2
    x2 = x2_ + (torch.floor(x1) % 2)
    x = torch.stack([x1, x2], dim=1)
    y = ((torch.floor(x1) + 2) * 2 + torch.floor(x2 + 2) // 2).long() % 8
    return x, y


def _moons(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Two interleaving half circles with Gaussian noise 0.1 (scaled, centred)."""
    y = torch.randint(0, 2, (n,), generator=g)
    theta = torch.rand(n, generator=g) * math.pi
    x_top = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    x_bot = torch.stack([1 - torch.cos(theta), 0.5 - torch.sin(theta)], 1)
    x = torch.where(y[:, None] == 0, x_top, x_bot)
    x = x + 0.1 * torch.randn(n, 2, generator=g)
    x = (x - torch.tensor([0.5, 0.25])) * 1.5
    return x, y


def _swissroll(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """2-D Swiss roll: t ~ U(1.5 pi, 4.5 pi), (t cos t, t sin t) / 5 plus noise 0.1."""
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g))
    x = torch.stack([t * torch.cos(t), t * torch.sin(t)], 1) / 5.0
    x = x + 0.1 * torch.randn(n, 2, generator=g)
    y = ((t - 1.5 * math.pi) / (3 * math.pi) * 4).long().clamp(0, 3)
    return x, y


def _rings(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Four concentric rings of radii 0.5, 1, 1.5, 2 (uniform along their length), noise 0.04."""
    radii = torch.tensor([0.5, 1.0, 1.5, 2.0])
    probs = radii / radii.sum()
    y = torch.multinomial(probs, n, replacement=True, generator=g)
    theta = torch.rand(n, generator=g) * 2 * math.pi
    r = radii[y]
    x = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], 1)
    return x + 0.04 * torch.randn(n, 2, generator=g), y


def _gmm8(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Eight Gaussians (std 0.1) equally spaced on a circle of radius 2."""
    y = torch.randint(0, 8, (n,), generator=g)
    ang = y.float() * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return centres + 0.1 * torch.randn(n, 2, generator=g), y


TOY2D: dict[str, Callable[[int, torch.Generator], tuple[Tensor, Tensor]]] = {
    "checkerboard": _checkerboard,
    "moons": _moons,
    "swissroll": _swissroll,
    "rings": _rings,
    "gmm8": _gmm8,
}

_NUM_CLASSES = {"checkerboard": 8, "moons": 2, "swissroll": 4, "rings": 4, "gmm8": 8}


def make_toy2d(
    name: str, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw ``n`` points ``[n, 2]`` and labels ``[n]`` from the toy set ``name``."""
    if name not in TOY2D:
        raise ValueError(f"toy data name must be one of {sorted(TOY2D)}, got {name!r}")
    n = check_size("n", n)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    x, y = TOY2D[name](n, g)
    return x.float(), y.long()


class Toy2D(torch.utils.data.Dataset):
    """In-memory toy 2-D data set; ``split`` ("train"|"test") selects an independent seed.

    Items are ``(x [2], y [])``; ``.info`` describes it (kind "vector", levels None: continuous).
    """

    def __init__(
        self, name: str, n: int = 10000, seed: int = 0, split: str = "train", scale: float = 1.0
    ):
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        seed = check_size("seed", seed, minimum=0)
        g = torch.Generator().manual_seed(seed * 2 + (0 if split == "train" else 1) + 12345)
        x, y = make_toy2d(name, n, g)
        self.x = x * check_positive("scale", scale)
        self.y = y
        self.info = {
            "name": name,
            "kind": "vector",
            "shape": [2],
            "levels": None,
            "data_range": None,
            "num_classes": _NUM_CLASSES[name],
        }

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]

    def get_batch(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Vectorised ``(x [B, 2], y [B])`` for integer indices ``idx`` [B]."""
        return self.x[idx], self.y[idx]
