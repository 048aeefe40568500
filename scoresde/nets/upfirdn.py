"""FIR up/down-sampling of images (``upfirdn2d``) in plain PyTorch, as used by NCSN++.

``upfirdn2d(x, k, up, down, pad)`` is, per channel: insert ``up - 1`` zeros between samples,
zero-pad by ``pad = (p0, p1)`` on both ends of both axes, convolve with the 2-D FIR filter ``k``
(a true convolution: the filter is flipped) and keep every ``down``-th output sample. The layers of
Song et al. 2021 (after StyleGAN2, Karras et al. 2020, appendix B) build on it:

- ``upsample_2d`` / ``downsample_2d``: resample by 2 with the separable filter ``k (x) k``,
  normalised to sum 1 (times ``factor^2`` when upsampling, so a constant image stays constant);
- ``conv_downsample_2d``: FIR filter, then a strided convolution with weight ``w`` (one padding);
- ``upsample_conv_2d``: a transposed (fractionally strided) convolution with ``w``, then the FIR
  filter. The reference PyTorch port flips ``w`` with ``w[..., ::-1, ::-1]``, which PyTorch rejects
  (negative slice step), so that path never ran there; this is the flip it intends (the
  StyleGAN2 / JAX behaviour), checked in the tests against upsampling followed by a 3x3 convolution.

The reference compiles this as a CUDA op; here it is a depthwise ``conv2d``, so it runs on CPU and
CUDA, in float32, float64 and under bf16 autocast, and is differentiable to any order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "conv_downsample_2d",
    "downsample_2d",
    "fir_kernel_2d",
    "naive_downsample_2d",
    "naive_upsample_2d",
    "upfirdn2d",
    "upsample_2d",
    "upsample_conv_2d",
]


def fir_kernel_2d(k: Sequence[float], gain: float = 1.0) -> Tensor:
    """The separable 2-D filter ``outer(k, k) / sum`` times ``gain`` (float32, as the reference)."""
    k1 = torch.as_tensor([float(v) for v in k], dtype=torch.float32)
    if k1.dim() != 1 or k1.numel() < 1:
        raise ValueError(f"fir_kernel must be a non-empty 1-D sequence, got {k!r}")
    k2 = torch.outer(k1, k1)
    return k2 / k2.sum() * gain


def upfirdn2d(x: Tensor, k: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)):
    """Upsample (zero insertion), pad, FIR-filter and downsample ``x`` [N, C, H, W] per channel.

    Output size per axis: ``(H * up + p0 + p1 - kh) // down + 1``. Negative pads crop.
    """
    N, C, H, W = x.shape
    kh, kw = k.shape
    if up > 1:  # zero insertion: x[i] lands at i * up
        x = x.reshape(N, C, H, 1, W, 1)
        x = F.pad(x, (0, up - 1, 0, 0, 0, up - 1))
        x = x.reshape(N, C, H * up, W * up)
    p0, p1 = pad
    x = F.pad(x, (max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)))
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0) : x.shape[2] - max(-p1, 0), max(-p0, 0) : x.shape[3] - max(-p1, 0)]
    w = torch.flip(k, [0, 1]).to(dtype=x.dtype, device=x.device)
    w = w.reshape(1, 1, kh, kw).expand(C, 1, kh, kw)
    return F.conv2d(x, w, stride=down, groups=C)


def upsample_2d(x: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """FIR upsampling by ``factor`` (filter scaled by factor^2): [N, C, H, W] -> [N, C, fH, fW]."""
    kk = fir_kernel_2d(k, gain=factor**2)
    p = kk.shape[0] - factor
    return upfirdn2d(x, kk, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(x: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """FIR downsampling by ``factor``: [N, C, H, W] -> [N, C, H / f, W / f]."""
    kk = fir_kernel_2d(k)
    p = kk.shape[0] - factor
    return upfirdn2d(x, kk, down=factor, pad=((p + 1) // 2, p // 2))


def conv_downsample_2d(x: Tensor, w: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """FIR filter then ``conv2d(w, stride=factor)``: one padding for both (fused, StyleGAN2)."""
    kk = fir_kernel_2d(k)
    p = (kk.shape[0] - factor) + (w.shape[-1] - 1)
    x = upfirdn2d(x, kk, pad=((p + 1) // 2, p // 2))
    return F.conv2d(x, w, stride=factor)


def upsample_conv_2d(x: Tensor, w: Tensor, k: Sequence[float], factor: int = 2) -> Tensor:
    """Transposed convolution with ``w`` [out, in, kh, kw], then the FIR filter.

    The transposed convolution has stride ``factor``.
    """
    kk = fir_kernel_2d(k, gain=factor**2)
    conv = w.shape[-1]
    p = (kk.shape[0] - factor) - (conv - 1)
    # conv_transpose2d wants [in, out, kh, kw]; the spatial flip makes it the adjoint of conv2d(w)
    wt = torch.flip(w, [2, 3]).transpose(0, 1)
    x = F.conv_transpose2d(x, wt, stride=factor)
    return upfirdn2d(x, kk, pad=((p + 1) // 2 + factor - 1, p // 2 + 1))


def naive_upsample_2d(x: Tensor, factor: int = 2) -> Tensor:
    """Nearest-neighbour upsampling by repetition."""
    N, C, H, W = x.shape
    x = x.reshape(N, C, H, 1, W, 1).expand(N, C, H, factor, W, factor)
    return x.reshape(N, C, H * factor, W * factor)


def naive_downsample_2d(x: Tensor, factor: int = 2) -> Tensor:
    """Average pooling over ``factor x factor`` blocks."""
    N, C, H, W = x.shape
    return x.reshape(N, C, H // factor, factor, W // factor, factor).mean(dim=(3, 5))
