"""Building blocks of DDPM++ / NCSN++ (Song et al. 2021, appendix H), faithful to the release.

Each block computes what its namesake in the Score SDE release (``models/layerspp.py``,
``models/layers.py``) computes, operation for operation (same order of float32 operations where
it changes the last bits, e.g. ``/ sqrt(2)``), and its sub-modules carry
the release's names (``GroupNorm_0``, ``Conv_0``, ``Dense_0``, ``NIN_0``, ``Conv2d_0``, ``W``), so a
released state dict maps onto a block by a prefix. GroupNorms have ``min(C // 4, 32)`` groups and
eps 1e-6. Initialisation follows DDPM (variance scaling, ``init_scale`` on the last layer of a
residual branch; 0 gives zeros).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scoresde.nets.layers import conv, linear, variance_scaling_
from scoresde.nets.upfirdn import (
    conv_downsample_2d,
    downsample_2d,
    naive_downsample_2d,
    naive_upsample_2d,
    upsample_2d,
    upsample_conv_2d,
)

__all__ = [
    "NIN",
    "AttnBlockpp",
    "Combine",
    "Downsample",
    "FIRConv2d",
    "Level",
    "ResnetBlockBigGANpp",
    "ResnetBlockDDPMpp",
    "Upsample",
    "group_norm",
    "release_sigmas",
]

SQRT2 = math.sqrt(2.0)


def release_sigmas(sigma_min: float, sigma_max: float, num_scales: int) -> Tensor:
    """The release's ``utils.get_sigmas``: geometric from sigma_max down to sigma_min (float64)."""
    return torch.tensor(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales)))


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(C // 4, 32) groups, eps 1e-6 (the release's choice)."""
    return nn.GroupNorm(min(channels // 4, 32), channels, eps=1e-6)


class NIN(nn.Module):
    """Per-pixel linear map over channels, ``y = x W + b`` with ``W`` [C_in, C_out]."""

    def __init__(self, in_dim: int, num_units: int, init_scale: float = 0.1):
        super().__init__()
        self.W = nn.Parameter(variance_scaling_(torch.empty(in_dim, num_units), init_scale))
        self.b = nn.Parameter(torch.zeros(num_units))

    def forward(self, x: Tensor) -> Tensor:
        y = torch.einsum("bhwc,cd->bhwd", x.permute(0, 2, 3, 1), self.W) + self.b
        return y.permute(0, 3, 1, 2)


class AttnBlockpp(nn.Module):
    """Single-head self-attention over pixels, residual.

    The residual sum is divided by sqrt 2 with ``skip_rescale``.
    """

    def __init__(self, channels: int, skip_rescale: bool = False, init_scale: float = 0.0):
        super().__init__()
        self.GroupNorm_0 = group_norm(channels)
        self.NIN_0 = NIN(channels, channels)
        self.NIN_1 = NIN(channels, channels)
        self.NIN_2 = NIN(channels, channels)
        self.NIN_3 = NIN(channels, channels, init_scale=init_scale)
        self.skip_rescale = skip_rescale

    def forward(self, x: Tensor) -> Tensor:
        B, C, H, W = x.shape
        h = self.GroupNorm_0(x)
        q, k, v = self.NIN_0(h), self.NIN_1(h), self.NIN_2(h)
        w = torch.einsum("bchw,bcij->bhwij", q, k) * (int(C) ** (-0.5))
        w = F.softmax(w.reshape(B, H, W, H * W), dim=-1).reshape(B, H, W, H, W)
        h = self.NIN_3(torch.einsum("bhwij,bcij->bchw", w, v))
        return (x + h) / SQRT2 if self.skip_rescale else x + h


class FIRConv2d(nn.Module):
    """A k x k convolution fused with FIR upsampling or downsampling by 2 (StyleGAN2's Conv2d)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int = 3,
        up: bool = False,
        down: bool = False,
        resample_kernel: Sequence[int] = (1, 3, 3, 1),
        use_bias: bool = True,
    ):
        super().__init__()
        if up and down:
            raise ValueError("FIRConv2d: up and down are exclusive")
        self.weight = nn.Parameter(variance_scaling_(torch.empty(out_ch, in_ch, kernel, kernel)))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if use_bias else None
        self.up, self.down, self.kernel = up, down, kernel
        self.resample_kernel = tuple(resample_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if self.up:
            x = upsample_conv_2d(x, self.weight, self.resample_kernel)
        elif self.down:
            x = conv_downsample_2d(x, self.weight, self.resample_kernel)
        else:
            x = F.conv2d(x, self.weight, padding=self.kernel // 2)
        return x + self.bias.reshape(1, -1, 1, 1) if self.bias is not None else x


class Upsample(nn.Module):
    """2x upsampling: nearest (+ 3x3 conv) or FIR (+ fused 3x3 conv)."""

    def __init__(self, in_ch, out_ch=None, with_conv=False, fir=False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv(in_ch, out_ch, 3)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, up=True, resample_kernel=fir_kernel)
        self.fir, self.with_conv, self.fir_kernel = fir, with_conv, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        _, _, H, W = x.shape
        if not self.fir:
            h = F.interpolate(x, (H * 2, W * 2), mode="nearest")
            return self.Conv_0(h) if self.with_conv else h
        return self.Conv2d_0(x) if self.with_conv else upsample_2d(x, self.fir_kernel)


class Downsample(nn.Module):
    """2x downsampling: average pooling / strided 3x3 conv ('SAME' as TF), or FIR (+ fused conv)."""

    def __init__(self, in_ch, out_ch=None, with_conv=False, fir=False, fir_kernel=(1, 3, 3, 1)):
        super().__init__()
        out_ch = out_ch or in_ch
        if with_conv and not fir:
            self.Conv_0 = conv(in_ch, out_ch, 3, stride=2, padding=0)
        elif with_conv:
            self.Conv2d_0 = FIRConv2d(in_ch, out_ch, down=True, resample_kernel=fir_kernel)
        self.fir, self.with_conv, self.fir_kernel = fir, with_conv, tuple(fir_kernel)

    def forward(self, x: Tensor) -> Tensor:
        if not self.fir:
            if self.with_conv:
                return self.Conv_0(F.pad(x, (0, 1, 0, 1)))
            return F.avg_pool2d(x, 2, stride=2)
        return self.Conv2d_0(x) if self.with_conv else downsample_2d(x, self.fir_kernel)


class Combine(nn.Module):
    """Merge an input-pyramid image into features: 1x1 conv, then concatenate or add."""

    def __init__(self, dim1: int, dim2: int, method: str = "cat"):
        super().__init__()
        if method not in ("cat", "sum"):
            raise ValueError(f"progressive_combine must be 'cat' or 'sum', got {method!r}")
        self.Conv_0 = conv(dim1, dim2, 1)
        self.method = method

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = self.Conv_0(x)
        return torch.cat([h, y], dim=1) if self.method == "cat" else h + y


class _ResBlock(nn.Module):
    """Shared parts of both residual blocks: GroupNorm, act, conv, + Dense(act(temb)), GroupNorm,
    act, dropout, conv (``init_scale``); the sum with the shortcut is divided by sqrt 2 with
    ``skip_rescale``. No Dense layer when ``temb_dim`` is None."""

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        out_ch: int | None = None,
        temb_dim: int | None = None,
        dropout: float = 0.1,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
    ):
        super().__init__()
        out_ch = out_ch or in_ch
        self.GroupNorm_0 = group_norm(in_ch)
        self.Conv_0 = conv(in_ch, out_ch, 3)
        if temb_dim is not None:
            self.Dense_0 = linear(temb_dim, out_ch)
        self.GroupNorm_1 = group_norm(out_ch)
        self.Dropout_0 = nn.Dropout(dropout)
        self.Conv_1 = conv(out_ch, out_ch, 3, scale=init_scale)
        self.act, self.skip_rescale, self.in_ch, self.out_ch = act, skip_rescale, in_ch, out_ch

    def _branch(self, h: Tensor, temb: Tensor | None) -> Tensor:
        h = self.Conv_0(h)
        if temb is not None:
            h = h + self.Dense_0(self.act(temb))[:, :, None, None]
        h = self.Dropout_0(self.act(self.GroupNorm_1(h)))
        return self.Conv_1(h)

    def _sum(self, x: Tensor, h: Tensor) -> Tensor:
        return (x + h) / SQRT2 if self.skip_rescale else x + h


class ResnetBlockDDPMpp(_ResBlock):
    """DDPM's residual block; NIN (or 3x3 conv) shortcut when the channel count changes.
    ``branch``: the :class:`_ResBlock` options (``out_ch``, ``temb_dim``, ``dropout``, ...)."""

    def __init__(self, act: nn.Module, in_ch: int, *, conv_shortcut: bool = False, **branch):
        super().__init__(act, in_ch, **branch)
        if self.in_ch != self.out_ch:
            if conv_shortcut:
                self.Conv_2 = conv(self.in_ch, self.out_ch, 3)
            else:
                self.NIN_0 = NIN(self.in_ch, self.out_ch)
        self.conv_shortcut = conv_shortcut

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self._branch(self.act(self.GroupNorm_0(x)), temb)
        if self.in_ch != self.out_ch:
            x = self.Conv_2(x) if self.conv_shortcut else self.NIN_0(x)
        return self._sum(x, h)


class ResnetBlockBigGANpp(_ResBlock):
    """BigGAN's residual block with optional 2x up/down sampling (FIR or naive) inside.
    ``branch``: the :class:`_ResBlock` options; ``skip_rescale`` defaults to True here."""

    def __init__(
        self,
        act: nn.Module,
        in_ch: int,
        *,
        up: bool = False,
        down: bool = False,
        fir: bool = False,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        **branch,
    ):
        branch.setdefault("skip_rescale", True)
        super().__init__(act, in_ch, **branch)
        if self.in_ch != self.out_ch or up or down:
            self.Conv_2 = conv(self.in_ch, self.out_ch, 1)
        self.up, self.down, self.fir, self.fir_kernel = up, down, fir, tuple(fir_kernel)

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return upsample_2d(x, self.fir_kernel) if self.fir else naive_upsample_2d(x)
        if self.down:
            return downsample_2d(x, self.fir_kernel) if self.fir else naive_downsample_2d(x)
        return x

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self._branch(self._resample(self.act(self.GroupNorm_0(x))), temb)
        x = self._resample(x)
        if self.in_ch != self.out_ch or self.up or self.down:
            x = self.Conv_2(x)
        return self._sum(x, h)


class Level(nn.Module):
    """One resolution level: residual blocks, optional attention, pyramid and resampling."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attn = nn.ModuleList()
        self.resample: nn.Module | None = None
        self.pyramid: nn.Module | None = None
        self.pyramid_norm: nn.Module | None = None
