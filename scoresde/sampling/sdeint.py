"""The reverse-time SDE (Song et al. 2021, eq. 6) through ``torchsde.sdeint``.

torchsde integrates 2-D states forward in time: the state is flattened to [B, D] and time runs
as u = -t from -t_start to -eps, so with y(u) = x(-u)

    dy = -[f(y, -u) - g(-u)^2 s(y, -u)] du + g(-u) dW_u       (Ito, diagonal noise).

The Brownian motion is a ``torchsde.BrownianInterval`` whose entropy comes from the generator:
the same seed gives the same samples, but (unlike the other samplers) the Brownian path is
drawn for the whole batch, so the samples depend on how a run is split into batches.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.sampling.context import SamplerContext

__all__ = ["SDE_SOLVERS", "run_sdeint"]

SDE_SOLVERS = ("euler", "milstein", "srk")


class _TorchsdeReverse(torch.nn.Module):
    noise_type = "diagonal"
    sde_type = "ito"

    def __init__(self, ctx: SamplerContext, shape, t_lo: float, t_hi: float):
        super().__init__()
        self.ctx, self.shape, self.t_lo, self.t_hi = ctx, tuple(shape), t_lo, t_hi

    def _t(self, u: Tensor, y: Tensor) -> Tensor:
        return (-u).clamp(self.t_lo, self.t_hi).to(y.dtype).expand(y.shape[0])

    def f(self, u: Tensor, y: Tensor) -> Tensor:
        t = self._t(u, y)
        x = y.reshape(self.shape)
        g2 = self.ctx.sde.diffusion(t[:1]).to(y.dtype) ** 2
        drift = self.ctx.sde.drift(x, t) - g2 * self.ctx.score(x, t)
        return -drift.reshape(y.shape)

    def g(self, u: Tensor, y: Tensor) -> Tensor:
        t = self._t(u, y)
        return self.ctx.sde.diffusion(t[:1]).to(y.dtype).expand_as(y)


def run_sdeint(
    ctx: SamplerContext,
    x: Tensor,
    t_start: float,
    eps: float,
    steps: int,
    solver: str = "euler",
    adaptive: bool = False,
    rtol: float = 1e-3,
    atol: float = 1e-3,
    entropy: int | None = None,
    record_points: int = 0,
) -> tuple:
    """Integrate the reverse SDE; returns (x at eps, states at the recorded times or None, times)."""
    import torchsde

    B = x.shape[0]
    y0 = x.reshape(B, -1)
    dt = (t_start - eps) / steps
    if record_points:
        t_rec = torch.linspace(t_start, eps, record_points, dtype=torch.float64)
    else:
        t_rec = torch.tensor([t_start, eps], dtype=torch.float64)
    us = (-t_rec).to(dtype=x.dtype, device=x.device)
    bm = torchsde.BrownianInterval(
        t0=-t_start,
        t1=-eps,
        size=tuple(y0.shape),
        dtype=x.dtype,
        device=x.device,
        entropy=entropy,
        dt=dt,
        levy_area_approximation="space-time" if solver == "srk" else "none",
    )
    sde = _TorchsdeReverse(ctx, x.shape, eps, t_start)
    ys = torchsde.sdeint(
        sde, y0, us, bm=bm, method=solver, dt=dt, adaptive=adaptive, rtol=rtol, atol=atol
    )
    xs = ys.reshape(ys.shape[0], *x.shape)
    return xs[-1], (xs if record_points else None), t_rec
