"""Initialized layers shared by the networks: Xavier-uniform weights and zero biases (DDPM++),
or all zeros for the last layer of a residual branch / the output (so a block starts as the
identity and a fresh network outputs zero)."""

from __future__ import annotations

import math

from torch import Tensor, nn

__all__ = ["conv", "init_", "linear", "variance_scaling_"]


def variance_scaling_(weight: Tensor, scale: float = 1.0) -> Tensor:
    """DDPM's ``default_init``: uniform with variance ``scale / fan_avg`` (Xavier-uniform with
    gain sqrt(scale)); ``scale = 0`` gives zeros (the reference uses 1e-10)."""
    if scale == 0:
        return nn.init.zeros_(weight)
    return nn.init.xavier_uniform_(weight, gain=math.sqrt(scale))


def init_(
    layer: nn.Linear | nn.Conv2d, zero: bool = False, scale: float = 1.0
) -> nn.Linear | nn.Conv2d:
    """Initialize ``layer`` in place (variance scaling ``scale`` or zero weights, zero bias)."""
    variance_scaling_(layer.weight, 0.0 if zero else scale)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def linear(cin: int, cout: int, zero: bool = False) -> nn.Linear:
    return init_(nn.Linear(cin, cout), zero)


def conv(cin: int, cout: int, k: int, zero: bool = False, scale: float = 1.0, **kw) -> nn.Conv2d:
    """A k x k convolution with 'same' padding (``kw`` to nn.Conv2d, e.g. stride, padding)."""
    kw.setdefault("padding", k // 2)
    return init_(nn.Conv2d(cin, cout, k, **kw), zero, scale)
