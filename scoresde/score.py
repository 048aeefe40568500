"""ScoreModel: a network plus an SDE becomes a score function s(x, t) ~ grad_x log p_t(x).

Parameterizations (``out = net(x, c, y)``, ``std(t)`` the perturbation-kernel std of the SDE):

- ``"eps"`` (default): the net predicts the noise z of ``x_t = m(t) x_0 + std(t) z``, so
  ``score = -out / std(t)``. This is what the paper's DDPM++ / VP / sub-VP models use in the
  continuous setting (Song et al. 2021; Ho et al. 2020's epsilon-prediction).
- ``"score"``: the net outputs the score directly.
- ``"score_scaled"``: ``score = out / std(t)`` -- NCSN++ (VE) in the paper divides the output by
  sigma ("scale_by_sigma"), so the net sees a target of unit scale.

Time conditioning ``c`` fed to the net (``time_input``):

- ``"t"``: c = t in [0, 1]. The sinusoidal embedding multiplies by 1000 internally (DDPM's timestep
  range, the reference feeds 999 t); Gaussian Fourier features with scale 16 resolve [0, 1] well.
- ``"log_sigma"`` (VE only): c = log sigma(t) = log sigma_min + t log(sigma_max / sigma_min), the
  log noise level NCSN++ conditions on (finite at t = 0).
- ``"auto"`` (default): ``"log_sigma"`` for :class:`~scoresde.sde.VESDE`, ``"t"`` otherwise.

``std(0) = 0``, so the ``eps`` and ``score_scaled`` scores are infinite at t = 0: evaluate at
t >= eps > 0 (samplers and likelihoods stop at eps).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from scoresde.sde import SDE, VESDE, batch_view

__all__ = ["PARAMETERIZATIONS", "TIME_INPUTS", "ScoreModel"]

PARAMETERIZATIONS = ("eps", "score", "score_scaled")
TIME_INPUTS = ("auto", "t", "log_sigma")


class ScoreModel(nn.Module):
    """Wrap ``net(x, c, y=None)`` into ``forward(x [B, *dims], t [B], y=None) -> score [B, *dims]``.

    Args:
        net: a module ``net(x, c)`` / ``net(x, c, y)`` returning a tensor shaped like x.
        sde: the forward SDE (gives std(t) and, for VE, sigma(t)).
        parameterization: ``"eps"`` | ``"score"`` | ``"score_scaled"`` (see the module docstring).
        time_input: ``"auto"`` | ``"t"`` | ``"log_sigma"``: what the net receives as c.
    """

    def __init__(
        self,
        net: nn.Module,
        sde: SDE,
        parameterization: str = "eps",
        time_input: str = "auto",
    ):
        super().__init__()
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {PARAMETERIZATIONS}, got {parameterization!r}"
            )
        if time_input not in TIME_INPUTS:
            raise ValueError(f"time_input must be one of {TIME_INPUTS}, got {time_input!r}")
        if time_input == "auto":
            time_input = "log_sigma" if isinstance(sde, VESDE) else "t"
        if time_input == "log_sigma" and not hasattr(sde, "sigma"):
            raise ValueError(
                "time_input='log_sigma' needs an SDE with sigma(t) (VESDE), "
                f"got {type(sde).__name__}"
            )
        self.net = net
        self.sde = sde
        self.parameterization = parameterization
        self.time_input = time_input

    def conditioning(self, t: Tensor) -> Tensor:
        """The net's conditioning input c [B] for times t [B]."""
        if self.time_input == "log_sigma":
            return torch.log(self.sde.sigma(t))
        return t

    def _times(self, x: Tensor, t) -> Tensor:
        t = torch.as_tensor(t, device=x.device)
        if not t.is_floating_point():
            t = t.to(x.dtype)
        t = t.to(dtype=x.dtype)
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        if t.shape != (x.shape[0],):
            raise ValueError(
                f"t must have shape [B] = [{x.shape[0]}] or be a scalar, got {tuple(t.shape)}"
            )
        return t

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """Score estimate at (x [B, *dims], t [B]), optionally conditioned on labels y [B]."""
        t = self._times(x, t)
        c = self.conditioning(t)
        out = self.net(x, c) if y is None else self.net(x, c, y)
        if self.parameterization == "score":
            return out
        _, std = self.sde.marginal_coeffs(t)
        std = batch_view(std, out)
        return -out / std if self.parameterization == "eps" else out / std

    def score_fn(self, y: Tensor | None = None) -> Callable[[Tensor, Tensor], Tensor]:
        """``score_fn(x, t)`` for samplers and likelihoods (conditioned on ``y`` when given)."""

        def score(x: Tensor, t: Tensor) -> Tensor:
            return self(x, t, y)

        return score
