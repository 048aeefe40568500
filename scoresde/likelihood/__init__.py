"""Exact likelihoods through the probability-flow ODE, variational bounds, and bits/dim.

``python -m scoresde.likelihood`` evaluates a trained run (see ``__main__.py``).
"""

from scoresde.likelihood.bounds import BOUNDS, ElboResult, ddpm_bound, elbo
from scoresde.likelihood.bpd import (
    BitsPerDimResult,
    bits_per_dim,
    bpd_offset,
    dequantize,
    nats_to_bpd,
    to_levels,
)
from scoresde.likelihood.ode_likelihood import (
    ODE_METHODS,
    LikelihoodResult,
    ProbabilityFlowDynamics,
    log_likelihood,
)
from scoresde.likelihood.trace import TRACE_ESTIMATORS

__all__ = [
    "BOUNDS",
    "ODE_METHODS",
    "TRACE_ESTIMATORS",
    "BitsPerDimResult",
    "ElboResult",
    "LikelihoodResult",
    "ProbabilityFlowDynamics",
    "bits_per_dim",
    "bpd_offset",
    "ddpm_bound",
    "dequantize",
    "elbo",
    "log_likelihood",
    "nats_to_bpd",
    "to_levels",
]
