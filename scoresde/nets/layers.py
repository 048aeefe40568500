"""Initialized layers shared by the networks: Xavier-uniform weights and zero biases (DDPM++),
or all zeros for the last layer of a residual branch / the output (so a block starts as the
identity and a fresh network outputs zero)."""

from __future__ import annotations

from torch import nn

__all__ = ["conv", "init_", "linear"]


def init_(layer: nn.Linear | nn.Conv2d, zero: bool = False) -> nn.Linear | nn.Conv2d:
    """Initialize ``layer`` in place (Xavier-uniform or zero weights, zero bias) and return it."""
    if zero:
        nn.init.zeros_(layer.weight)
    else:
        nn.init.xavier_uniform_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def linear(cin: int, cout: int, zero: bool = False) -> nn.Linear:
    return init_(nn.Linear(cin, cout), zero)


def conv(cin: int, cout: int, k: int, zero: bool = False) -> nn.Conv2d:
    """A k x k convolution with 'same' padding."""
    return init_(nn.Conv2d(cin, cout, k, padding=k // 2), zero)
