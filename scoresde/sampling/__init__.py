"""Samplers for score-based models: ``sample(sde, score_fn, shape, method=...)`` and friends."""

from scoresde.sampling.api import (
    CORRECTOR_NAMES,
    METHOD_DEFAULTS,
    METHODS,
    PREDICTOR_NAMES,
    encode,
    sample,
    sample_adaptive,
    sample_ancestral,
    sample_annealed_langevin,
    sample_ddim,
    sample_dpm_solver,
    sample_euler_maruyama,
    sample_heun,
    sample_ode,
    sample_pc,
    sample_reverse_diffusion,
    sample_sde,
    sample_unipc,
)
from scoresde.sampling.context import SamplerContext, ScoreError
from scoresde.sampling.correctors import AnnealedLangevinCorrector, LangevinCorrector, NoneCorrector
from scoresde.sampling.grids import GRIDS, eps_for_sigma, time_grid
from scoresde.sampling.noise import KeyedNoise, draw_seeds
from scoresde.sampling.predictors import (
    AncestralPredictor,
    EulerMaruyamaPredictor,
    NonePredictor,
    ReverseDiffusionPredictor,
)
from scoresde.sampling.result import SampleResult

__all__ = [
    "CORRECTOR_NAMES",
    "GRIDS",
    "METHODS",
    "METHOD_DEFAULTS",
    "PREDICTOR_NAMES",
    "AncestralPredictor",
    "AnnealedLangevinCorrector",
    "EulerMaruyamaPredictor",
    "KeyedNoise",
    "LangevinCorrector",
    "NoneCorrector",
    "NonePredictor",
    "ReverseDiffusionPredictor",
    "SampleResult",
    "SamplerContext",
    "ScoreError",
    "draw_seeds",
    "encode",
    "eps_for_sigma",
    "sample",
    "sample_adaptive",
    "sample_ancestral",
    "sample_annealed_langevin",
    "sample_ddim",
    "sample_dpm_solver",
    "sample_euler_maruyama",
    "sample_heun",
    "sample_ode",
    "sample_pc",
    "sample_reverse_diffusion",
    "sample_sde",
    "sample_unipc",
    "time_grid",
]
