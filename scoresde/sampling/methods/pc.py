"""Predictor-corrector sampling (Song et al. 2021, Algorithms 2-3), and its special cases.

For i = 0..S-1 on a grid t_0 = t_start > ... > t_S = eps: the predictor moves x from t_i to
t_{i+1}, ``project`` is applied, then the corrector runs its Langevin steps at t_{i+1} (the
paper's order) -- on the shared loop (:func:`scoresde.sampling.loop.run_grid`). Euler-Maruyama,
reverse diffusion and ancestral sampling are PC with corrector ``none``; NCSN's annealed Langevin
dynamics (Song & Ermon 2019) is predictor ``none`` with corrector ``annealed_langevin`` on the
levels t_1..t_S. Predictors / correctors: :mod:`scoresde.sampling.predictors`,
:mod:`scoresde.sampling.correctors` (live registries: an entry added there is accepted here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from scoresde.sampling.checks import check_choice, check_int, check_positive
from scoresde.sampling.context import SamplerContext
from scoresde.sampling.correctors import CORRECTORS, LANGEVIN_NORMS, Corrector
from scoresde.sampling.loop import GridMethod, grid_for, run_grid
from scoresde.sampling.predictors import PREDICTORS, Predictor
from scoresde.sampling.registry import GridOptions, register_sampler

__all__ = ["AnnealedLangevinOptions", "PCOptions", "run_pc"]


@dataclass(frozen=True)
class AnnealedLangevinOptions(GridOptions):
    """``snr`` (> 0; alpha = 2 (snr std(t))^2), ``corrector_steps`` per level (>= 0),
    ``step_size``: NCSN's epsilon (alpha_i = epsilon sigma_i^2 / sigma_L^2), None = from snr."""

    snr: float = 0.16
    corrector_steps: int = 1
    step_size: float | None = None

    def check(self) -> None:
        super().check()
        check_positive("snr", self.snr)
        check_int("corrector_steps", self.corrector_steps, 0)
        if self.step_size is not None:
            check_positive("step_size", self.step_size)


@dataclass(frozen=True)
class PCOptions(AnnealedLangevinOptions):
    """``predictor`` / ``corrector`` names (PREDICTORS / CORRECTORS), ``langevin_norm``: the
    Langevin step rule (correctors.py): "std" (default; depends on t only, unbiased to O(alpha),
    batch-split invariant), "batch" (the reference's batch-wide rule), "per_sample" (biased)."""

    predictor: str = "reverse_diffusion"
    corrector: str = "langevin"
    langevin_norm: str = "std"

    def check(self) -> None:
        super().check()
        check_choice("predictor", self.predictor, tuple(PREDICTORS))
        check_choice("corrector", self.corrector, tuple(CORRECTORS))
        check_choice("langevin_norm", self.langevin_norm, LANGEVIN_NORMS)


class _PC(GridMethod):
    name = "pc"

    def __init__(self, predictor: Predictor, corrector: Corrector):
        self.predictor, self.corrector = predictor, corrector
        self.projects_step = predictor.moves

    def step(self, ctx, i, x, t, s):
        return self.predictor.step(ctx, i, x, t, s)

    def correct(self, ctx, i, x, s):
        return self.corrector.step(ctx, i, x, s)


def run_pc(
    ctx: SamplerContext,
    x: Tensor,
    opts: GridOptions,
    t_start: float,
    eps: float,
    predictor: str | None = None,
    corrector: str | None = None,
) -> Tensor:
    """PC over the options' grid; ``predictor`` / ``corrector`` override the options' names."""
    pred = PREDICTORS[predictor or opts.predictor]()
    sigma_last = float(ctx.sde.marginal_coeffs(torch.tensor(eps, dtype=torch.float64))[1])
    corr = CORRECTORS[corrector or opts.corrector](
        snr=getattr(opts, "snr", 0.16),
        n_steps=getattr(opts, "corrector_steps", 1),
        norm=getattr(opts, "langevin_norm", "std"),
        step_size=getattr(opts, "step_size", None),
        sigma_last=sigma_last,
    )
    return run_grid(ctx, x, grid_for(ctx, opts, t_start, eps), _PC(pred, corr))


def _fixed(predictor: str, corrector: str):
    def run(ctx, x, opts, t_start, eps):
        return run_pc(ctx, x, opts, t_start, eps, predictor, corrector)

    return run


for _name, _summary in (
    ("euler_maruyama", "Euler-Maruyama on the reverse SDE (Song et al. 2021, eq. 6)"),
    ("reverse_diffusion", "reverse diffusion predictor (Song et al. 2021, eq. 46)"),
    ("ancestral", "ancestral sampling, DDPM Alg. 2 / SMLD (Song et al. 2021, eq. 47)"),
):
    register_sampler(_name, GridOptions, _fixed(_name, "none"), stochastic=True, summary=_summary)
register_sampler(
    "annealed_langevin",
    AnnealedLangevinOptions,
    _fixed("none", "annealed_langevin"),
    stochastic=True,
    summary="annealed Langevin dynamics of NCSN (Song & Ermon 2019)",
)
register_sampler(
    "pc",
    PCOptions,
    run_pc,
    stochastic=True,
    summary="predictor-corrector (Song et al. 2021, Alg. 2/3): reverse diffusion + Langevin",
)
