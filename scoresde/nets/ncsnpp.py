"""NCSN++ / DDPM++ (Song et al. 2021, appendix H): the release's ``ncsnpp.NCSNpp``, readable.

One class covers every option the release's CIFAR-10 configs use (argument names as in its
``config.model``): ``embedding_type`` positional | fourier, ``resblock_type`` ddpm | biggan,
``fir``, ``progressive`` none | output_skip | residual, ``progressive_input`` none |
input_skip | residual, ``progressive_combine`` sum | cat, ``attn_resolutions``, ``skip_rescale``,
``scale_by_sigma``, ``noise_conditional`` (the release's ``model.conditional``), ``dropout``,
``centered`` (data in [-1, 1]; otherwise x in [0, 1] is mapped to 2x - 1 first). DDPM++ cont. is
positional + biggan + no FIR; NCSN++ cont. is fourier + biggan + FIR +
``progressive_input="residual"``.

Layout (``L = len(ch_mult)`` levels, ``R = num_res_blocks``)::

    emb:   Fourier(log sigma) | sinusoidal(999 t)  ->  Dense -> act -> Dense   (noise_conditional)
    down:  conv3x3; per level: R x (ResBlock [+ Attn]); then (not last) a downsampling block,
           merged with the downsampled input image (progressive_input)
    mid:   ResBlock, Attn, ResBlock
    up:    per level: (R + 1) x ResBlock(concat skip) [+ Attn]; output pyramid (progressive);
           then (not level 0) an upsampling block
    out:   GroupNorm -> act -> conv3x3   (or the output pyramid); / sigma with scale_by_sigma

``forward(x, c)``: ``c`` is scoresde's conditioning (see :class:`~scoresde.score.ScoreModel`),
turned into the release's network label by ``label``: ``"scaled_t"`` (c = t, label
``time_scale * t`` = 999 t, the release's continuous VP / sub-VP), ``"sigma_t"`` (c = t, label
sigma(t) = sigma_min (sigma_max / sigma_min)^t, its continuous VE), ``"log_sigma"`` (c = log sigma,
label sigma = exp(c), scoresde's VE conditioning) or ``"identity"`` (c is the label itself).
Attention is placed by the level's resolution at ``image_size``; inputs must be
``image_size x image_size``.

:meth:`NCSNpp.release_module_names` lists, in the release's ``all_modules`` order, the module of
this net that holds each release module's weights (the converter maps keys through it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from scoresde.nets.embeddings import FourierProjection, check_labels, timestep_embedding
from scoresde.nets.layers import conv, linear
from scoresde.nets.ncsnpp_layers import (
    AttnBlockpp,
    Combine,
    Downsample,
    Level,
    ResnetBlockBigGANpp,
    ResnetBlockDDPMpp,
    Upsample,
    group_norm,
    release_sigmas,
)

__all__ = ["LABELS", "NCSNpp"]

LABELS = ("scaled_t", "sigma_t", "log_sigma", "identity")
_ACTS = {"swish": nn.SiLU, "elu": nn.ELU, "relu": nn.ReLU, "lrelu": lambda: nn.LeakyReLU(0.2)}
_CHOICES = {
    "embedding_type": ("positional", "fourier"),
    "resblock_type": ("ddpm", "biggan"),
    "progressive": ("none", "output_skip", "residual"),
    "progressive_input": ("none", "input_skip", "residual"),
    "progressive_combine": ("sum", "cat"),
    "label": LABELS,
    "nonlinearity": tuple(_ACTS),
}


class NCSNpp(nn.Module):
    """NCSN++ / DDPM++ score network, ``forward(x [B, C, H, W], c [B]) -> [B, C, H, W]``."""

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = 0.1,
        resamp_with_conv: bool = True,
        noise_conditional: bool = True,
        fir: bool = False,
        fir_kernel: Sequence[int] = (1, 3, 3, 1),
        skip_rescale: bool = True,
        resblock_type: str = "biggan",
        progressive: str = "none",
        progressive_input: str = "none",
        progressive_combine: str = "sum",
        embedding_type: str = "positional",
        fourier_scale: float = 16.0,
        init_scale: float = 0.0,
        scale_by_sigma: bool = False,
        centered: bool = True,
        nonlinearity: str = "swish",
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        num_scales: int = 1000,
        label: str = "scaled_t",
        time_scale: float = 999.0,
        num_classes: int | None = None,
    ):
        super().__init__()
        chosen = (embedding_type, resblock_type, progressive, progressive_input)
        chosen += (progressive_combine, label, nonlinearity)
        for key, val in zip(_CHOICES, chosen, strict=True):
            if val not in _CHOICES[key]:
                raise ValueError(f"{key} must be one of {_CHOICES[key]}, got {val!r}")
        if num_classes is not None:
            raise ValueError("NCSNpp is not class-conditional: num_classes must be None")
        ch_mult = tuple(int(m) for m in ch_mult)
        if image_size % 2 ** (len(ch_mult) - 1):
            raise ValueError(
                f"image_size must be divisible by 2^(len(ch_mult) - 1), got {image_size}"
            )
        self.in_channels, self.image_size, self.nf = in_channels, image_size, nf
        self.num_classes = None
        self.embedding_type, self.label, self.time_scale = embedding_type, label, float(time_scale)
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.noise_conditional, self.centered = noise_conditional, centered
        self.scale_by_sigma, self.skip_rescale = scale_by_sigma, skip_rescale
        self.resblock_type, self.progressive = resblock_type, progressive
        self.progressive_input = progressive_input
        self.act = act = _ACTS[nonlinearity]()
        # the release's noise levels (indexed by positional nets with scale_by_sigma)
        self.register_buffer("sigmas", release_sigmas(sigma_min, sigma_max, num_scales))
        order: list[str] = []  # release all_modules order -> our module paths

        def add(path: str, module: nn.Module) -> nn.Module:
            order.append(path)
            return module

        if embedding_type == "fourier":
            self.fourier = add("fourier", FourierProjection(nf, fourier_scale))
        embed_dim = 2 * nf if embedding_type == "fourier" else nf
        if noise_conditional:
            self.temb0 = add("temb0", linear(embed_dim, 4 * nf))
            self.temb1 = add("temb1", linear(4 * nf, 4 * nf))

        def resblock(in_ch: int, out_ch: int | None = None, **kw) -> nn.Module:
            common = {"temb_dim": 4 * nf, "dropout": dropout, "skip_rescale": skip_rescale}
            common.update(init_scale=init_scale, **kw)
            if resblock_type == "ddpm":
                return ResnetBlockDDPMpp(act, in_ch, out_ch=out_ch, **common)
            return ResnetBlockBigGANpp(
                act, in_ch, out_ch=out_ch, fir=fir, fir_kernel=fir_kernel, **common
            )

        def attn(ch: int) -> AttnBlockpp:
            return AttnBlockpp(ch, skip_rescale=skip_rescale, init_scale=init_scale)

        resample = {"fir": fir, "fir_kernel": fir_kernel}
        if progressive == "output_skip":
            self.pyramid_upsample = Upsample(in_channels, **resample)
        if progressive_input == "input_skip":
            self.pyramid_downsample = Downsample(in_channels, **resample)

        self.conv_in = add("conv_in", conv(in_channels, nf, 3))
        self.down, self.up = nn.ModuleList(), nn.ModuleList()
        self._attn_levels = tuple(
            image_size // 2**i in tuple(attn_resolutions) for i in range(len(ch_mult))
        )
        hs_c, in_ch, pyr_ch = [nf], nf, in_channels
        for i, mult in enumerate(ch_mult):
            lvl = Level()
            self.down.append(lvl)
            for j in range(num_res_blocks):
                lvl.blocks.append(add(f"down.{i}.blocks.{j}", resblock(in_ch, nf * mult)))
                in_ch = nf * mult
                if self._attn_levels[i]:
                    lvl.attn.append(add(f"down.{i}.attn.{j}", attn(in_ch)))
                hs_c.append(in_ch)
            if i == len(ch_mult) - 1:
                continue
            if resblock_type == "ddpm":
                lvl.resample = add(
                    f"down.{i}.resample", Downsample(in_ch, with_conv=resamp_with_conv, **resample)
                )
            else:
                lvl.resample = add(f"down.{i}.resample", resblock(in_ch, down=True))
            if progressive_input == "input_skip":
                lvl.pyramid = add(f"down.{i}.pyramid", Combine(pyr_ch, in_ch, progressive_combine))
                in_ch *= 2 if progressive_combine == "cat" else 1
            elif progressive_input == "residual":
                down = Downsample(pyr_ch, in_ch, with_conv=True, **resample)
                lvl.pyramid = add(f"down.{i}.pyramid", down)
                pyr_ch = in_ch
            hs_c.append(in_ch)

        in_ch = hs_c[-1]
        self.mid = nn.ModuleList()
        self.mid.append(add("mid.0", resblock(in_ch)))
        self.mid.append(add("mid.1", attn(in_ch)))
        self.mid.append(add("mid.2", resblock(in_ch)))

        pyr_ch = 0
        for k, i in enumerate(reversed(range(len(ch_mult)))):
            lvl = Level()
            self.up.append(lvl)
            for j in range(num_res_blocks + 1):
                block = resblock(in_ch + hs_c.pop(), nf * ch_mult[i])
                lvl.blocks.append(add(f"up.{k}.blocks.{j}", block))
                in_ch = nf * ch_mult[i]
            if self._attn_levels[i]:
                lvl.attn.append(add(f"up.{k}.attn.0", attn(in_ch)))
            if progressive != "none" and (k == 0 or progressive == "output_skip"):
                out = in_channels if progressive == "output_skip" else in_ch
                lvl.pyramid_norm = add(f"up.{k}.pyramid_norm", group_norm(in_ch))
                scale = init_scale if progressive == "output_skip" else 1.0
                lvl.pyramid = add(f"up.{k}.pyramid", conv(in_ch, out, 3, scale=scale))
                pyr_ch = out
            elif progressive == "residual":
                up = Upsample(pyr_ch, in_ch, with_conv=True, **resample)
                lvl.pyramid = add(f"up.{k}.pyramid", up)
                pyr_ch = in_ch
            if i != 0:
                if resblock_type == "ddpm":
                    up = Upsample(in_ch, with_conv=resamp_with_conv, **resample)
                else:
                    up = resblock(in_ch, up=True)
                lvl.resample = add(f"up.{k}.resample", up)
        if progressive != "output_skip":
            self.norm_out = add("norm_out", group_norm(in_ch))
            self.conv_out = add("conv_out", conv(in_ch, in_channels, 3, scale=init_scale))
        self._release_order = tuple(order)

    def release_module_names(self) -> tuple[str, ...]:
        """Our module path for each entry of the release's ``all_modules``, in its order."""
        return self._release_order

    def _label(self, c: Tensor) -> Tensor:
        """The release's network input (noise label) for scoresde's conditioning ``c``."""
        if self.label == "scaled_t":
            return c * self.time_scale
        if self.label == "sigma_t":
            return self.sigma_min * (self.sigma_max / self.sigma_min) ** c
        return torch.exp(c) if self.label == "log_sigma" else c

    def forward(self, x: Tensor, c: Tensor, y: Tensor | None = None) -> Tensor:
        """x: [B, C, image_size, image_size]; c: [B] (see the module docstring)."""
        B = x.shape[0]
        if x.dim() != 4 or tuple(x.shape[1:]) != (
            self.in_channels,
            self.image_size,
            self.image_size,
        ):
            raise ValueError(
                f"x must have shape [B, {self.in_channels}, {self.image_size}, {self.image_size}], "
                f"got {tuple(x.shape)}"
            )
        if y is not None:
            check_labels(y, None, B)
        c = torch.as_tensor(c, device=x.device)
        c = c.expand(B) if c.dim() == 0 else c
        label = self._label(c)
        if self.embedding_type == "fourier":
            temb = self.fourier(c if self.label == "log_sigma" else torch.log(label))
            sigmas = label
        else:
            temb = timestep_embedding(label, self.nf)
            sigmas = self.sigmas[label.long()] if self.scale_by_sigma else None
        temb = self.temb1(self.act(self.temb0(temb))) if self.noise_conditional else None
        if not self.centered:
            x = 2 * x - 1.0

        pyr = x if self.progressive_input != "none" else None
        hs = [self.conv_in(x)]
        for lvl in self.down:
            for j, block in enumerate(lvl.blocks):
                h = block(hs[-1], temb)
                hs.append(lvl.attn[j](h) if len(lvl.attn) else h)
            if lvl.resample is None:
                continue
            h = (
                lvl.resample(hs[-1], temb)
                if self.resblock_type == "biggan"
                else lvl.resample(hs[-1])
            )
            if self.progressive_input == "input_skip":
                pyr = self.pyramid_downsample(pyr)
                h = lvl.pyramid(pyr, h)
            elif self.progressive_input == "residual":
                pyr = self._sum(lvl.pyramid(pyr), h)
                h = pyr
            hs.append(h)

        h = self.mid[0](hs[-1], temb)
        h = self.mid[2](self.mid[1](h), temb)

        pyramid = None
        for k, lvl in enumerate(self.up):
            for block in lvl.blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
            if len(lvl.attn):
                h = lvl.attn[0](h)
            if lvl.pyramid_norm is not None:
                p = lvl.pyramid(self.act(lvl.pyramid_norm(h)))
                pyramid = p if k == 0 else self.pyramid_upsample(pyramid) + p
            elif lvl.pyramid is not None:  # progressive == "residual", k > 0
                pyramid = self._sum(lvl.pyramid(pyramid), h)
                h = pyramid
            if lvl.resample is not None:
                h = lvl.resample(h, temb) if self.resblock_type == "biggan" else lvl.resample(h)

        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = self.conv_out(self.act(self.norm_out(h)))
        if self.scale_by_sigma:
            h = h / sigmas.reshape(B, 1, 1, 1).to(h.dtype)
        return h

    def _sum(self, a: Tensor, b: Tensor) -> Tensor:
        return (a + b) / math.sqrt(2.0) if self.skip_rescale else a + b
