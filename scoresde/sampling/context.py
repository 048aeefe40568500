"""Per-call state shared by all samplers: the counted, checked score function, the noise source,
the ``project`` hook, the trajectory recorder, the progress bar, the reverse drifts (the SDE's
own, :meth:`scoresde.sde.SDE.reverse`), Tweedie's denoiser (:meth:`scoresde.sde.SDE.tweedie`)
and the final denoising step."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from scoresde.sampling.noise import NoiseSource
from scoresde.sde import SDE, ScoreFn

__all__ = ["ProjectFn", "SamplerContext", "ScoreError"]

ProjectFn = Callable[[Tensor, Tensor], Tensor]


class ScoreError(ValueError):
    """``score_fn`` returned a wrong shape or non-finite values (the message names step, time)."""


class SamplerContext:
    """Everything a sampler loop needs besides its own options.

    ``nfe`` counts the calls of ``score_fn`` actually made.
    """

    def __init__(
        self,
        sde: SDE,
        score_fn: ScoreFn,
        noise: NoiseSource,
        *,
        project: ProjectFn | None = None,
        record: bool = False,
        progress: bool = False,
        check: bool = True,
        denoise: bool = False,
        generator: torch.Generator | None = None,
    ):
        self.sde = sde
        self.score_fn = score_fn
        self.noise = noise
        self._project = project
        self.record_on = record
        self.progress = progress
        self.check = check
        self.denoise = denoise  # sample() ends with a Tweedie step (a method may fuse it)
        self.denoise_done = False
        self.generator = generator
        self.nfe = 0
        self.trajectory: list[Tensor] = []
        self.times: list[Tensor] = []
        self.grid: Tensor | None = None  # the time grid a method ran on (SampleResult.times)
        # the one reverse-time SDE / probability-flow drift, driven by the checked score
        self.reverse_sde = sde.reverse(self.score)
        self.probability_flow = sde.reverse(self.score, probability_flow=True)

    # ------------------------------------------------------------------ score
    def score(self, x: Tensor, t: Tensor, step: int | None = None) -> Tensor:
        """score_fn(x, t) with t [B]; counts the call, checks shape and finiteness."""
        s = self.score_fn(x, t)
        self.nfe += 1
        if self.check:
            where = f"step {step}" if step is not None else f"evaluation {self.nfe}"
            if not isinstance(s, Tensor) or s.shape != x.shape:
                shape = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ScoreError(
                    f"score_fn returned shape {shape} at {where} (t={_fmt_t(t)}); "
                    f"expected {tuple(x.shape)}"
                )
            if not bool(torch.isfinite(s).all()):
                raise ScoreError(f"score_fn returned non-finite values at {where} (t={_fmt_t(t)})")
        return s

    def tvec(self, t: Tensor | float, x: Tensor) -> Tensor:
        """The time t (0-d, any dtype) as a [B] tensor in x's dtype and device."""
        t = torch.as_tensor(t)
        return t.to(dtype=x.dtype, device=x.device).expand(x.shape[0])

    def denoised(self, x: Tensor, t: Tensor, step: int | None = None) -> Tensor:
        """Tweedie's E[x_0 | x_t] from one counted score call (t: 0-d float64 or [B])."""
        tv = t if t.dim() == 1 else self.tvec(t, x)
        return self.sde.tweedie(x, t, self.score(x, tv, step))

    def final_denoise(self, x: Tensor, eps: float) -> Tensor:
        """The final step x <- E[x_0 | x_eps] (1 NFE), then ``project`` at t = 0 and record."""
        x = self.denoised(x, torch.tensor(eps, dtype=torch.float64))
        zeros = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        x = self.project(x, zeros)
        per_sample = bool(self.times) and self.times[-1].dim() == 1
        self.record(x, torch.zeros(x.shape[0] if per_sample else (), dtype=torch.float64))
        self.denoise_done = True
        return x

    # ------------------------------------------------------------------ hooks
    def project(self, x: Tensor, t: Tensor) -> Tensor:
        """Apply the user's ``project(x, t)`` (inpainting etc.); t is the [B] time x now has."""
        if self._project is None:
            return x
        out = self._project(x, t)
        if not isinstance(out, Tensor) or out.shape != x.shape:
            raise ValueError(f"project must return a tensor of shape {tuple(x.shape)}")
        return out

    def record(self, x: Tensor, t) -> None:
        if self.record_on:
            self.trajectory.append(x.detach().clone())
            self.times.append(torch.as_tensor(t).detach().clone())

    def record_all(self, xs: Tensor, ts: Tensor) -> None:
        """A solver library's states xs [K, B, *dims] at the float64 times ts [K]."""
        self.grid = ts
        if self.record_on:
            self.trajectory.extend(list(xs))
            self.times.extend(list(ts))

    def steps(self, n: int, desc: str = "sampling") -> Iterable[int]:
        """range(n), wrapped in a tqdm bar when ``progress`` is on."""
        if not self.progress:
            return range(n)

        return tqdm(range(n), desc=desc, leave=False)


def _fmt_t(t: Tensor) -> str:
    t = torch.as_tensor(t).detach().reshape(-1)
    if t.numel() == 0:
        return "[]"
    lo, hi = float(t.min()), float(t.max())
    return f"{lo:.6g}" if lo == hi else f"{lo:.6g}..{hi:.6g}"
