"""Masks and the colour space of inpainting and colorization (Song et al. 2021, app. I.2-I.3).

``make_mask`` builds the named inpainting masks; ``decouple`` / ``couple`` map RGB to the
orthogonal space whose first channel is the grey level (R + G + B) / sqrt(3), and back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DECOUPLE_MATRIX",
    "MASK_NAMES",
    "couple",
    "decouple",
    "make_mask",
    "prepare_mask",
    "to_grayscale",
]

# Columns: grey (1,1,1)/sqrt3, (-2,1,1)/sqrt6, (0,1,-1)/sqrt2 -- the matrix of Song et al.'s
# colorization code (up to float rounding). decouple: u_j = sum_i x_i M_ij over the channel axis.
DECOUPLE_MATRIX = torch.tensor(
    [
        [1.0 / math.sqrt(3.0), -2.0 / math.sqrt(6.0), 0.0],
        [1.0 / math.sqrt(3.0), 1.0 / math.sqrt(6.0), 1.0 / math.sqrt(2.0)],
        [1.0 / math.sqrt(3.0), 1.0 / math.sqrt(6.0), -1.0 / math.sqrt(2.0)],
    ],
    dtype=torch.float64,
)

MASK_NAMES = ("half", "left_half", "right_half", "top_half", "bottom_half", "center")


# ---------------------------------------------------------------------------------------- masks
def make_mask(name: str, shape: Sequence[int]) -> Tensor:
    """A built-in mask of event shape ``shape`` (1 = known, 0 = to generate), float32.

    Images ``[C, H, W]``: ``half``/``left_half`` keeps the left half of the columns, ``right_half``,
    ``top_half``, ``bottom_half`` likewise; ``center`` generates the central (H/2) x (W/2) square.
    Vectors ``[D]``: ``half``/``left_half``/``top_half`` keep the first ceil(D/2) coordinates,
    ``right_half``/``bottom_half`` the last ones; ``center`` generates the middle half.
    """
    if name not in MASK_NAMES:
        raise ValueError(f"mask name must be one of {list(MASK_NAMES)}, got {name!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        (D,) = shape
        m = torch.zeros(D)
        h = (D + 1) // 2
        if name in ("half", "left_half", "top_half"):
            m[:h] = 1
        elif name in ("right_half", "bottom_half"):
            m[D - h :] = 1
        else:
            m[:] = 1
            m[D // 4 : D // 4 + max(D // 2, 1)] = 0
        return m
    if len(shape) != 3:
        raise ValueError(f"shape must be [D] or [C, H, W], got {list(shape)}")
    C, H, W = shape
    m = torch.zeros(C, H, W)
    if name in ("half", "left_half"):
        m[..., : (W + 1) // 2] = 1
    elif name == "right_half":
        m[..., W // 2 :] = 1
    elif name == "top_half":
        m[:, : (H + 1) // 2, :] = 1
    elif name == "bottom_half":
        m[:, H // 2 :, :] = 1
    else:
        m[:] = 1
        m[:, H // 4 : H // 4 + max(H // 2, 1), W // 4 : W // 4 + max(W // 2, 1)] = 0
    return m


def prepare_mask(mask: Tensor, data: Tensor) -> Tensor:
    """Check that ``mask`` broadcasts to ``data`` [B, *dims] without enlarging it.

    Returns it in data's dtype. Accepted: any shape that broadcasts to ``data.shape``
    (``[*dims]``, ``[1, *dims]``, ``[B, *dims]``, ``[H, W]`` for images). Values must be 0 or 1.
    """
    mask = torch.as_tensor(mask)
    if mask.dtype == torch.bool:
        mask = mask.to(data.dtype)
    try:
        out_shape = torch.broadcast_shapes(mask.shape, data.shape)
    except RuntimeError as err:
        raise ValueError(
            f"mask shape {list(mask.shape)} does not match the data shape {list(data.shape)} "
            f"(expected [*dims] = {list(data.shape[1:])}, [1, *dims] or [B, *dims])"
        ) from err
    if tuple(out_shape) != tuple(data.shape):
        raise ValueError(
            f"mask shape {list(mask.shape)} does not match the data shape {list(data.shape)}"
        )
    mask = mask.to(device=data.device, dtype=data.dtype)
    if not torch.all((mask == 0) | (mask == 1)):
        raise ValueError("mask values must be 0 (generate) or 1 (known)")
    return mask


# ---------------------------------------------------------------------------------- colour space
def _channel_matrix(x: Tensor, inverse: bool) -> Tensor:
    if x.dim() < 2 or x.shape[1] != 3:
        raise ValueError(f"colour transforms need images [B, 3, ...], got shape {list(x.shape)}")
    M = DECOUPLE_MATRIX.to(device=x.device, dtype=x.dtype)
    return M.T if inverse else M


def decouple(x: Tensor) -> Tensor:
    """RGB [B, 3, ...] -> decoupled space, channel 0 = (R + G + B) / sqrt(3).

    ``u_j = sum_i x_i M_ij``.
    """
    return torch.einsum("bi...,ij->bj...", x, _channel_matrix(x, inverse=False))


def couple(u: Tensor) -> Tensor:
    """Inverse of :func:`decouple` (M is orthogonal, so M^{-1} = M^T)."""
    return torch.einsum("bi...,ij->bj...", u, _channel_matrix(u, inverse=True))


def to_grayscale(x: Tensor) -> Tensor:
    """Grey level (channel mean) of RGB images [B, 3, ...], shape [B, 1, ...]."""
    if x.dim() < 2 or x.shape[1] != 3:
        raise ValueError(f"to_grayscale needs images [B, 3, ...], got shape {list(x.shape)}")
    return x.mean(dim=1, keepdim=True)
