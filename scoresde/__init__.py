"""scoresde: score-based generative modeling through stochastic differential equations.

The public API, re-exported from the submodules (nothing is defined here). See the README and
``ARCHITECTURE.md`` for the contract: a score function is any ``score_fn(x [B, *dims], t [B])``.
"""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .controllable import colorize, inpaint, make_mask, sdedit
from .ema import EMA
from .guidance import classifier_free_score_fn, classifier_guided_score_fn
from .likelihood import BitsPerDimResult, LikelihoodResult, bits_per_dim, log_likelihood
from .losses import ddpm_loss, dsm_loss, ncsn_loss
from .metrics import (
    energy_distance,
    feature_statistics,
    frechet_distance,
    kid,
    mmd2,
    precision_recall,
    sliced_wasserstein,
)
from .nets import MLP, UNet, build_net, ddpmpp_cifar10, ncsnpp_cifar10, unet_small
from .oracle import GaussianMixture
from .runs import Run, load_run
from .sampling import METHODS, SampleResult, ScoreError, encode, sample
from .score import ScoreModel
from .sde import SDE, VESDE, VPSDE, ReverseSDE, SubVPSDE

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
    "encode",
    "energy_distance",
    "feature_statistics",
    "frechet_distance",
    "inpaint",
    "kid",
    "load_checkpoint",
    "load_run",
    "log_likelihood",
    "make_mask",
    "mmd2",
    "ncsn_loss",
    "ncsnpp_cifar10",
    "precision_recall",
    "sample",
    "save_checkpoint",
    "sdedit",
    "sliced_wasserstein",
    "unet_small",
]
