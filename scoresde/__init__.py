"""scoresde: score-based generative modeling through stochastic differential equations.

The public API, re-exported from the submodules (nothing is defined here). The README's "How the
code is laid out" gives the layers; the contract: a score function is any
``score_fn(x [B, *dims], t [B])`` returning the score with the shape of ``x``.
"""

from scoresde.controllable.guidance import classifier_free_score_fn, classifier_guided_score_fn
from scoresde.controllable.tasks import colorize, inpaint, make_mask, sdedit
from scoresde.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scoresde.io.runs import Run, load_run
from scoresde.likelihood import (
    BitsPerDimResult,
    ElboResult,
    LikelihoodResult,
    bits_per_dim,
    elbo,
    log_likelihood,
)
from scoresde.losses import ddpm_loss, dsm_loss, ncsn_loss
from scoresde.metrics import (
    energy_distance,
    feature_statistics,
    frechet_distance,
    kid,
    mmd2,
    precision_recall,
    sliced_wasserstein,
)
from scoresde.nets import MLP, UNet, build_net, ddpmpp_cifar10, ncsnpp_cifar10, unet_small
from scoresde.oracle import GaussianMixture
from scoresde.sampling import (
    METHODS,
    SampleResult,
    ScoreError,
    encode,
    fit_timesteps,
    method_options,
    register_sampler,
    sample,
)
from scoresde.score import ScoreModel
from scoresde.sde import SDE, VESDE, VPSDE, ReverseSDE, SubVPSDE
from scoresde.training.ema import EMA

__version__ = "0.1.0"

__all__ = [
    "EMA",
    "METHODS",
    "MLP",
    "SDE",
    "VESDE",
    "VPSDE",
    "BitsPerDimResult",
    "CheckpointError",
    "ElboResult",
    "GaussianMixture",
    "LikelihoodResult",
    "ReverseSDE",
    "Run",
    "SampleResult",
    "ScoreError",
    "ScoreModel",
    "SubVPSDE",
    "UNet",
    "bits_per_dim",
    "build_net",
    "classifier_free_score_fn",
    "classifier_guided_score_fn",
    "colorize",
    "ddpm_loss",
    "ddpmpp_cifar10",
    "dsm_loss",
    "elbo",
    "encode",
    "energy_distance",
    "feature_statistics",
    "fit_timesteps",
    "frechet_distance",
    "inpaint",
    "kid",
    "load_checkpoint",
    "load_run",
    "log_likelihood",
    "make_mask",
    "method_options",
    "mmd2",
    "ncsn_loss",
    "ncsnpp_cifar10",
    "precision_recall",
    "register_sampler",
    "sample",
    "save_checkpoint",
    "sdedit",
    "sliced_wasserstein",
    "unet_small",
]
