"""The reverse-time SDE (Song et al. 2021, eq. 6) through ``torchsde.sdeint``.

torchsde integrates 2-D states forward in time: the state is flattened to [B, D] and time runs
as u = -t from -t_start to -eps, so with y(u) = x(-u) and the SDE's own reverse drift
b(x, t) = f(x, t) - g(t)^2 s(x, t) (``sde.reverse(score)``)

    dy = -b(y, -u) du + g(-u) dW_u       (Ito, diagonal noise).

The Brownian motion is a ``torchsde.BrownianInterval`` whose entropy comes from the generator:
the same seed gives the same samples, but (unlike the other samplers) the Brownian path is
drawn for the whole batch, so the samples depend on how a run is split into batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchsde
from torch import Tensor

from scoresde.sampling.checks import check_bool, check_choice, check_positive
from scoresde.sampling.context import SamplerContext
from scoresde.sampling.registry import SamplerOptions, register_sampler

__all__ = ["SDE_SOLVERS", "SDEOptions", "run_sdeint"]

SDE_SOLVERS = ("euler", "milstein", "srk")


@dataclass(frozen=True)
class SDEOptions(SamplerOptions):
    """``solver`` (torchsde: euler | milstein | srk) with dt = (t_start - eps) / steps
    (steps None = sde.N); ``adaptive`` step control with ``rtol`` / ``atol``."""

    solver: str = "euler"
    adaptive: bool = False
    rtol: float = 1e-3
    atol: float = 1e-3

    def check(self) -> None:
        check_choice("solver", self.solver, SDE_SOLVERS)
        check_bool("adaptive", self.adaptive)
        check_positive("rtol", self.rtol)
        check_positive("atol", self.atol)


class _TorchsdeReverse(torch.nn.Module):
    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, ctx: SamplerContext, shape, t_lo: float, t_hi: float):
        super().__init__()
        self.ctx, self.shape, self.t_lo, self.t_hi = ctx, tuple(shape), t_lo, t_hi

    def _t(self, u: Tensor, y: Tensor) -> Tensor:
        return (-u).clamp(self.t_lo, self.t_hi).to(y.dtype).expand(y.shape[0])

    def f(self, u: Tensor, y: Tensor) -> Tensor:
        x = y.reshape(self.shape)
        return -self.ctx.reverse_sde.drift(x, self._t(u, y)).reshape(y.shape)

    def g(self, u: Tensor, y: Tensor) -> Tensor:
        return self.ctx.sde.diffusion(self._t(u, y)[:1]).to(y.dtype).expand_as(y)


def run_sdeint(ctx: SamplerContext, x: Tensor, opts: SDEOptions, t_start: float, eps: float):
    """Integrate the reverse SDE from t_start to eps; records ``steps + 1`` states if asked."""

    steps = ctx.sde.N if opts.steps is None else opts.steps
    gen_dev = ctx.generator.device if ctx.generator is not None else "cpu"
    entropy = int(torch.randint(0, 2**62, (1,), generator=ctx.generator, device=gen_dev))
    B = x.shape[0]
    y0 = x.reshape(B, -1)
    dt = (t_start - eps) / steps
    t_rec = torch.linspace(t_start, eps, steps + 1 if ctx.record_on else 2, dtype=torch.float64)
    bm = torchsde.BrownianInterval(
        t0=-t_start,
        t1=-eps,
        size=tuple(y0.shape),
        dtype=x.dtype,
        device=x.device,
        entropy=entropy,
        dt=dt,
        levy_area_approximation="space-time" if opts.solver == "srk" else "none",
    )
    ys = torchsde.sdeint(
        _TorchsdeReverse(ctx, x.shape, eps, t_start),
        y0,
        (-t_rec).to(dtype=x.dtype, device=x.device),
        bm=bm,
        method=opts.solver,
        dt=dt,
        adaptive=opts.adaptive,
        rtol=opts.rtol,
        atol=opts.atol,
    )
    xs = ys.reshape(ys.shape[0], *x.shape)
    ctx.record_all(xs, t_rec)
    return xs[-1]


register_sampler(
    "sde",
    SDEOptions,
    run_sdeint,
    stochastic=True,
    chunk_independent=False,
    supports_project=False,
    summary="reverse SDE through torchsde (euler | milstein | srk); batch-wide Brownian path",
)
