"""Score networks: time embeddings, a residual MLP for vectors, a DDPM++ / NCSN++-style UNet."""

from .embeddings import GaussianFourierEmbedding, SinusoidalEmbedding, TimeConditioning
from .factory import NET_NAMES, FlatMLP, build_net, ddpmpp_cifar10, ncsnpp_cifar10, unet_small
from .mlp import MLP
from .unet import UNet

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
