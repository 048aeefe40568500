"""Score networks: time embeddings, a residual MLP for vectors, a DDPM++ / NCSN++-style UNet."""

from scoresde.nets.embeddings import GaussianFourierEmbedding, SinusoidalEmbedding, TimeConditioning
from scoresde.nets.factory import (
    NET_NAMES,
    FlatMLP,
    build_net,
    ddpmpp_cifar10,
    ncsnpp_cifar10,
    unet_small,
)
from scoresde.nets.mlp import MLP
from scoresde.nets.unet import UNet

__all__ = [
    "MLP",
    "NET_NAMES",
    "FlatMLP",
    "GaussianFourierEmbedding",
    "SinusoidalEmbedding",
    "TimeConditioning",
    "UNet",
    "build_net",
    "ddpmpp_cifar10",
    "ncsnpp_cifar10",
    "unet_small",
]
