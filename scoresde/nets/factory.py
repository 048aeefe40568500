"""Named network presets and :func:`build_net` (the entry point configs use).

Presets (any keyword overrides the preset's value):

- ``ddpmpp_cifar10`` -- DDPM++ cont. of Song et al. 2021 (configs/vp/cifar10_ddpmpp_continuous.py):
  :class:`~scoresde.nets.ncsnpp.NCSNpp` with nf 128, ch_mult (1, 2, 2, 2), 4 residual blocks per
  level, attention at 16x16, dropout 0.1, positional embedding of 999 t, BigGAN blocks, no FIR,
  skip rescaling: 61,804,419 parameters for 3x32x32, exactly the release's.
- ``ncsnpp_cifar10`` -- NCSN++ cont. (configs/ve/cifar10_ncsnpp_continuous.py): Gaussian Fourier
  embedding (scale 16) of log sigma, FIR resampling, residual input pyramid: 62,758,915 parameters,
  exactly the release's. Its conditioning input is log sigma (``label="log_sigma"``, scoresde's VE
  ``time_input``); the division by sigma is left to ``ScoreModel(parameterization="score_scaled")``.
- ``ddpmpp_deep_cifar10`` / ``ncsnpp_deep_cifar10`` -- the "deep" variants (8 blocks per level):
  106,632,579 and 107,587,075 parameters.
- ``unet_small`` -- ch=32, ch_mult=(1, 2), one block per level, attention at the lowest
  resolution, no dropout: trains on a CPU (digits 8x8, 28x28, 32x32).

``"ncsnpp"`` builds :class:`~scoresde.nets.ncsnpp.NCSNpp` from explicit options (what the converter
of the release's checkpoints writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from scoresde.nets.mlp import MLP
from scoresde.nets.ncsnpp import NCSNpp
from scoresde.nets.unet import UNet

__all__ = [
    "NET_NAMES",
    "FlatMLP",
    "build_net",
    "ddpmpp_cifar10",
    "ddpmpp_deep_cifar10",
    "ncsnpp_cifar10",
    "ncsnpp_deep_cifar10",
    "unet_small",
]

NET_NAMES = (
    "mlp",
    "unet",
    "unet_small",
    "ncsnpp",
    "ddpmpp_cifar10",
    "ncsnpp_cifar10",
    "ddpmpp_deep_cifar10",
    "ncsnpp_deep_cifar10",
)

DDPMPP_CIFAR10: dict[str, Any] = {
    "in_channels": 3,
    "image_size": 32,
    "nf": 128,
    "ch_mult": (1, 2, 2, 2),
    "num_res_blocks": 4,
    "attn_resolutions": (16,),
    "dropout": 0.1,
    "resblock_type": "biggan",
    "embedding_type": "positional",
    "fir": False,
    "skip_rescale": True,
    "label": "scaled_t",
}
NCSNPP_CIFAR10: dict[str, Any] = {
    **DDPMPP_CIFAR10,
    "embedding_type": "fourier",
    "fourier_scale": 16.0,
    "fir": True,
    "progressive_input": "residual",
    "label": "log_sigma",
}


def _preset(base: dict[str, Any], kwargs: dict[str, Any]) -> NCSNpp:
    return NCSNpp(**{**base, **kwargs})


def ddpmpp_cifar10(**kwargs: Any) -> NCSNpp:
    """DDPM++ cont. (CIFAR-10), 61,804,419 parameters."""
    return _preset(DDPMPP_CIFAR10, kwargs)


def ncsnpp_cifar10(**kwargs: Any) -> NCSNpp:
    """NCSN++ cont. (CIFAR-10), 62,758,915 parameters."""
    return _preset(NCSNPP_CIFAR10, kwargs)


def ddpmpp_deep_cifar10(**kwargs: Any) -> NCSNpp:
    """DDPM++ cont. deep (8 blocks per level), 106,632,579 parameters."""
    return _preset({**DDPMPP_CIFAR10, "num_res_blocks": 8}, kwargs)


def ncsnpp_deep_cifar10(**kwargs: Any) -> NCSNpp:
    """NCSN++ cont. deep (8 blocks per level), 107,587,075 parameters."""
    return _preset({**NCSNPP_CIFAR10, "num_res_blocks": 8}, kwargs)


def unet_small(**kwargs: Any) -> UNet:
    """Small UNet for CPU training; attention at the lowest resolution unless overridden."""
    cfg = {
        "in_channels": 3,
        "image_size": 32,
        "ch": 32,
        "ch_mult": (1, 2),
        "num_res_blocks": 1,
        "dropout": 0.0,
        "time_embedding": "fourier",
    }
    cfg.update(kwargs)
    if "attn_resolutions" not in cfg:
        levels = len(tuple(cfg["ch_mult"]))
        factor = 2 ** (levels - 1)
        padded = -(-int(cfg["image_size"]) // factor) * factor
        cfg["attn_resolutions"] = (padded // factor,)
    return UNet(**cfg)


class FlatMLP(nn.Module):
    """An :class:`MLP` on flattened data of any event shape: [B, *data_shape] -> same shape."""

    def __init__(self, data_shape: Sequence[int], **kwargs: Any):
        super().__init__()
        self.data_shape = tuple(int(s) for s in data_shape)
        dim = 1
        for s in self.data_shape:
            dim *= s
        self.mlp = MLP(dim, **kwargs)

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None) -> Tensor:
        B = x.shape[0]
        return self.mlp(x.reshape(B, -1), c, y).reshape(B, *self.data_shape)


_UNETS = {
    "unet": UNet,
    "unet_small": unet_small,
    "ncsnpp": NCSNpp,
    "ddpmpp_cifar10": ddpmpp_cifar10,
    "ncsnpp_cifar10": ncsnpp_cifar10,
    "ddpmpp_deep_cifar10": ddpmpp_deep_cifar10,
    "ncsnpp_deep_cifar10": ncsnpp_deep_cifar10,
}


def build_net(
    name: str, data_shape: Sequence[int], num_classes: int | None = None, **kwargs: Any
) -> nn.Module:
    """Build a score network by name for data of shape ``data_shape`` (no batch dimension).

    ``"mlp"``: vectors ``(D,)`` (other shapes are flattened, :class:`FlatMLP`). The UNets and
    NCSN++ nets need ``(C, H, W)``; ``in_channels`` and ``image_size`` are taken from it.
    ``kwargs`` go to the constructor / preset.
    """
    data_shape = tuple(int(s) for s in data_shape)
    if not data_shape or min(data_shape) < 1:
        raise ValueError(
            f"data_shape must be a non-empty tuple of positive sizes, got {data_shape!r}"
        )
    if name == "mlp":
        if len(data_shape) == 1:
            return MLP(data_shape[0], num_classes=num_classes, **kwargs)
        return FlatMLP(data_shape, num_classes=num_classes, **kwargs)
    if name in _UNETS:
        if len(data_shape) != 3:
            raise ValueError(f"net {name!r} needs data_shape (C, H, W), got {data_shape!r}")
        C, H, _ = data_shape
        return _UNETS[name](in_channels=C, image_size=H, num_classes=num_classes, **kwargs)
    raise ValueError(f"name must be one of {NET_NAMES}, got {name!r}")
