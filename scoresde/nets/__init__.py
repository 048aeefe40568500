"""Score networks: time embeddings, a residual MLP for vectors, a UNet, and the Score SDE paper's
DDPM++ / NCSN++ (:class:`NCSNpp`, faithful to the release so its checkpoints load)."""

from scoresde.nets.embeddings import GaussianFourierEmbedding, SinusoidalEmbedding, TimeConditioning
from scoresde.nets.factory import (
    NET_NAMES,
    FlatMLP,
    build_net,
    ddpmpp_cifar10,
    ddpmpp_deep_cifar10,
    ncsnpp_cifar10,
    ncsnpp_deep_cifar10,
    unet_small,
)
from scoresde.nets.mlp import MLP
from scoresde.nets.ncsnpp import NCSNpp
from scoresde.nets.unet import UNet

__all__ = [
    "MLP",
    "NET_NAMES",
    "FlatMLP",
    "GaussianFourierEmbedding",
    "NCSNpp",
    "SinusoidalEmbedding",
    "TimeConditioning",
    "UNet",
    "build_net",
    "ddpmpp_cifar10",
    "ddpmpp_deep_cifar10",
    "ncsnpp_cifar10",
    "ncsnpp_deep_cifar10",
    "unet_small",
]
