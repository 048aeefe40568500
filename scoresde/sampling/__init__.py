"""Samplers for score-based models: ``sample(sde, score_fn, shape, method=...)`` over one registry
of methods (``scoresde.sampling.methods``, one module per paper) and one grid loop."""

from scoresde.sampling.api import (
    CORRECTOR_NAMES,
    METHOD_DEFAULTS,
    PREDICTOR_NAMES,
    encode,
    method_defaults,
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
from scoresde.sampling.loop import GridMethod, ScaledGridMethod, grid_for, run_grid
from scoresde.sampling.noise import KeyedNoise, draw_seeds
from scoresde.sampling.predictors import (
    AncestralPredictor,
    EulerMaruyamaPredictor,
    NonePredictor,
    ReverseDiffusionPredictor,
)
from scoresde.sampling.registry import (
    METHODS,
    GridOptions,
    MultistepOptions,
    SamplerOptions,
    SamplerSpec,
    get_sampler,
    method_options,
    register_sampler,
)
from scoresde.sampling.result import SampleResult
from scoresde.sampling.tuning import TimestepFit, fit_timesteps

__all__ = [
    "CORRECTOR_NAMES",
    "GRIDS",
    "METHODS",
    "METHOD_DEFAULTS",
    "PREDICTOR_NAMES",
    "AncestralPredictor",
    "AnnealedLangevinCorrector",
    "EulerMaruyamaPredictor",
    "GridMethod",
    "GridOptions",
    "KeyedNoise",
    "LangevinCorrector",
    "MultistepOptions",
    "NoneCorrector",
    "NonePredictor",
    "ReverseDiffusionPredictor",
    "SampleResult",
    "SamplerContext",
    "SamplerOptions",
    "SamplerSpec",
    "ScaledGridMethod",
    "ScoreError",
    "TimestepFit",
    "draw_seeds",
    "encode",
    "eps_for_sigma",
    "fit_timesteps",
    "get_sampler",
    "grid_for",
    "method_defaults",
    "method_options",
    "register_sampler",
    "run_grid",
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
