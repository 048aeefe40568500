"""UNet score network of the DDPM++ / NCSN++ family (Song et al. 2021, appendix H).

Layout (as the reference ``ncsnpp.py`` with ``resblock_type="biggan"``, ``progressive="none"``):

    conv3x3(C -> ch)
    down, per level l:  num_res_blocks x ResBlock(-> ch * ch_mult[l]) [+ attention],
                        then (except the last level) a ResBlock that downsamples (2x2 average)
    middle:             ResBlock, attention, ResBlock
    up, per level l:    (num_res_blocks + 1) x ResBlock(concat skip -> ch * ch_mult[l])
                        [+ attention],
                        then (except level 0) a ResBlock that upsamples (nearest)
    GroupNorm, SiLU, conv3x3(-> C)  (zero-initialised)

Every ResBlock: ``GroupNorm -> SiLU -> [resample] -> conv3x3 -> + Dense(SiLU(emb)) -> GroupNorm
-> SiLU -> Dropout -> conv3x3 (zero init)``; the shortcut gets a 1x1 conv when channels or
resolution change, and the sum is rescaled by 1/sqrt(2) (``skip_rescale``; attention blocks too).
``emb`` is the time embedding (sinusoidal for DDPM++, Gaussian Fourier for NCSN++) through a
2-layer MLP of width 4 ch, plus an optional label embedding (null label ``num_classes`` when
``y is None``).

Image sizes: the net downsamples ``len(ch_mult) - 1`` times. An input whose height or width is not
a multiple of ``2^(len(ch_mult) - 1)`` (28x28 with four levels) is reflect-padded up to the next
multiple (28 -> 32) and the output is cropped back, so any size works. ``attn_resolutions`` refer to
feature-map sizes of the (padded) input: for 28x28 with ``ch_mult=(1, 2, 2)`` the sizes are
28, 14, 7 -- pass e.g. ``attn_resolutions=(14,)``; for 8x8 inputs the default ``(16,)`` gives no
attention except in the middle block, which always has it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from scoresde.nets.embeddings import TimeConditioning
from scoresde.nets.layers import conv, linear

__all__ = ["AttnBlock", "ResBlock", "UNet", "group_count"]


def group_count(channels: int, max_groups: int = 32) -> int:
    """GroupNorm groups as in DDPM++ (min(C // 4, 32)), lowered to a divisor of C if needed."""
    g = max(1, min(channels // 4, max_groups))
    while channels % g:
        g -= 1
    return g


class ResBlock(nn.Module):
    """BigGAN-style residual block with time conditioning and optional 2x up/down sampling."""

    def __init__(
        self,
        cin: int,
        cout: int,
        emb_dim: int,
        dropout: float = 0.1,
        up: bool = False,
        down: bool = False,
        skip_rescale: bool = True,
    ):
        super().__init__()
        self.up, self.down = up, down
        self.norm0 = nn.GroupNorm(group_count(cin), cin, eps=1e-6)
        self.conv0 = conv(cin, cout, 3)
        self.dense = linear(emb_dim, cout)
        self.norm1 = nn.GroupNorm(group_count(cout), cout, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.conv1 = conv(cout, cout, 3, zero=True)
        self.skip = conv(cin, cout, 1) if (cin != cout or up or down) else None
        self.scale = 1.0 / math.sqrt(2.0) if skip_rescale else 1.0
        self.act = nn.SiLU()

    def _resample(self, x: Tensor) -> Tensor:
        if self.up:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.down:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self._resample(self.act(self.norm0(x)))
        h = self.conv0(h) + self.dense(self.act(emb))[:, :, None, None]
        h = self.conv1(self.drop(self.act(self.norm1(h))))
        x = self._resample(x)
        if self.skip is not None:
            x = self.skip(x)
        return (x + h) * self.scale


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection (rescaled by 1/sqrt(2))."""

    def __init__(self, channels: int, skip_rescale: bool = True):
        super().__init__()
        self.norm = nn.GroupNorm(group_count(channels), channels, eps=1e-6)
        self.qkv = linear(channels, 3 * channels)
        self.proj = linear(channels, channels, zero=True)
        self.scale = 1.0 / math.sqrt(2.0) if skip_rescale else 1.0

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        B, C, H, W = x.shape
        h = self.norm(x).reshape(B, C, H * W).transpose(1, 2)  # [B, HW, C]
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        h = F.scaled_dot_product_attention(q, k, v)
        h = self.proj(h).transpose(1, 2).reshape(B, C, H, W)
        return (x + h) * self.scale


class UNet(nn.Module):
    """DDPM++ / NCSN++-style UNet, ``forward(x [B, C, H, W], c [B], y=None) -> [B, C, H, W]``.

    Args:
        in_channels: image channels C (1 or 3 typically).
        image_size: nominal input size (informational; any H, W work, see the module docstring).
        ch: base channel count (``nf`` in the reference).
        ch_mult: channel multiplier per resolution level.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        attn_resolutions: feature-map sizes with self-attention after the residual blocks.
        dropout: dropout rate inside residual blocks.
        time_embedding: ``"sinusoidal"`` (DDPM++) or ``"fourier"`` (NCSN++).
        num_classes: enables label conditioning (null label ``num_classes`` for ``y=None``).
        skip_rescale: rescale residual sums by 1/sqrt(2).
        fourier_scale: std of the Fourier frequencies (16 in NCSN++).
        embed_dim: size of the raw time embedding (default: ch for sinusoidal, 2 ch for Fourier,
            as in the reference).
    """

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        ch: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        time_embedding: str = "sinusoidal",
        num_classes: int | None = None,
        skip_rescale: bool = True,
        fourier_scale: float = 16.0,
        embed_dim: int | None = None,
    ):
        super().__init__()
        for name, val in (("in_channels", in_channels), ("image_size", image_size), ("ch", ch)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {val!r}")
        if (
            isinstance(num_res_blocks, bool)
            or not isinstance(num_res_blocks, int)
            or num_res_blocks < 1
        ):
            raise ValueError(f"num_res_blocks must be an integer >= 1, got {num_res_blocks!r}")
        ch_mult = tuple(int(m) for m in ch_mult)
        if not ch_mult or min(ch_mult) < 1:
            raise ValueError(
                f"ch_mult must be a non-empty sequence of integers >= 1, got {ch_mult!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.in_channels = in_channels
        self.image_size = image_size
        self.ch_mult = ch_mult
        self.attn_resolutions = tuple(int(r) for r in attn_resolutions)
        self.num_classes = num_classes
        self.factor = 2 ** (len(ch_mult) - 1)
        if embed_dim is None:
            embed_dim = 2 * ch if time_embedding == "fourier" else ch
        emb_dim = 4 * ch
        self.cond = TimeConditioning(embed_dim, emb_dim, time_embedding, fourier_scale, num_classes)
        self.act = nn.SiLU()

        def block(cin: int, cout: int, **kw) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout, skip_rescale=skip_rescale, **kw)

        res = self.padded_size(image_size)
        self.conv_in = conv(in_channels, ch, 3)
        self.down = nn.ModuleList()
        skips = [ch]
        cin = ch
        for level, mult in enumerate(ch_mult):
            cout = ch * mult
            for _ in range(num_res_blocks):
                layers = nn.ModuleList([block(cin, cout)])
                cin = cout
                if res in self.attn_resolutions:
                    layers.append(AttnBlock(cin, skip_rescale))
                self.down.append(layers)
                skips.append(cin)
            if level != len(ch_mult) - 1:
                self.down.append(nn.ModuleList([block(cin, cin, down=True)]))
                skips.append(cin)
                res //= 2
        self.mid = nn.ModuleList([block(cin, cin), AttnBlock(cin, skip_rescale), block(cin, cin)])
        self.up = nn.ModuleList()
        self._up_pops = []  # number of skip connections each up-stage consumes
        for level in reversed(range(len(ch_mult))):
            cout = ch * ch_mult[level]
            for _ in range(num_res_blocks + 1):
                self.up.append(nn.ModuleList([block(cin + skips.pop(), cout)]))
                self._up_pops.append(1)
                cin = cout
            if res in self.attn_resolutions:
                self.up.append(nn.ModuleList([AttnBlock(cin, skip_rescale)]))
                self._up_pops.append(0)
            if level != 0:
                self.up.append(nn.ModuleList([block(cin, cin, up=True)]))
                self._up_pops.append(0)
                res *= 2
        assert not skips
        self.norm_out = nn.GroupNorm(group_count(cin), cin, eps=1e-6)
        self.conv_out = conv(cin, in_channels, 3, zero=True)

    def padded_size(self, size: int) -> int:
        """Smallest multiple of 2^(len(ch_mult) - 1) that is >= ``size``."""
        return -(-size // self.factor) * self.factor

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None) -> Tensor:
        """x: [B, C, H, W]; c: [B] conditioning (see ScoreModel); y: [B] labels or None."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"x must have shape [B, {self.in_channels}, H, W], got {tuple(x.shape)}"
            )
        B, _, H, W = x.shape
        emb = self.cond(c.to(x.device), y, B, x.dtype)
        ph, pw = self.padded_size(H) - H, self.padded_size(W) - W
        if ph or pw:
            mode = "reflect" if (ph < H and pw < W) else "replicate"
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode=mode)
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            for layer in layers:
                h = layer(h, emb)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layers, pops in zip(self.up, self._up_pops):
            if pops:
                h = torch.cat([h, hs.pop()], dim=1)
            for layer in layers:
                h = layer(h, emb)
        h = self.conv_out(self.act(self.norm_out(h)))
        if ph or pw:
            h = h[:, :, ph // 2 : ph // 2 + H, pw // 2 : pw // 2 + W]
        return h
