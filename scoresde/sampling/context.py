"""Per-call state shared by all samplers: the counted, checked score function, the noise source,
the ``project`` hook, the trajectory recorder and the progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from scoresde.sampling.noise import NoiseSource
from scoresde.sde import SDE, ScoreFn

__all__ = ["ProjectFn", "SamplerContext", "ScoreError"]

ProjectFn = Callable[[Tensor, Tensor], Tensor]


class ScoreError(ValueError):
    """``score_fn`` returned a wrong shape or non-finite values (the message names step and time)."""


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
    ):
        self.sde = sde
        self.score_fn = score_fn
        self.noise = noise
        self._project = project
        self.record_on = record
        self.progress = progress
        self.check = check
        self.nfe = 0
        self.trajectory: list[Tensor] = []
        self.times: list[Tensor] = []

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
                    f"score_fn returned shape {shape} at {where} (t={_fmt_t(t)}); expected {tuple(x.shape)}"
                )
            if not bool(torch.isfinite(s).all()):
                raise ScoreError(f"score_fn returned non-finite values at {where} (t={_fmt_t(t)})")
        return s

    def denoised(
        self, x: Tensor, t: Tensor, m: Tensor, std: Tensor, step: int | None = None
    ) -> Tensor:
        """Tweedie's estimate E[x_0 | x_t] = (x + std(t)^2 s(x, t)) / m(t) (Efron 2011); m, std broadcastable."""
        return (x + std**2 * self.score(x, t, step)) / m

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

    def steps(self, n: int, desc: str = "sampling") -> Iterable[int]:
        """range(n), wrapped in a tqdm bar when ``progress`` is on."""
        if not self.progress:
            return range(n)
        from tqdm.auto import tqdm

        return tqdm(range(n), desc=desc, leave=False)


def _fmt_t(t: Tensor) -> str:
    t = torch.as_tensor(t).detach().reshape(-1)
    if t.numel() == 0:
        return "[]"
    lo, hi = float(t.min()), float(t.max())
    return f"{lo:.6g}" if lo == hi else f"{lo:.6g}..{hi:.6g}"
