"""Exact likelihoods through the probability-flow ODE, and bits/dim of discrete data.

``python -m scoresde.likelihood`` evaluates a trained run (see ``__main__.py``).
"""

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
    "ODE_METHODS",
    "TRACE_ESTIMATORS",
    "BitsPerDimResult",
    "LikelihoodResult",
    "ProbabilityFlowDynamics",
    "bits_per_dim",
    "bpd_offset",
    "dequantize",
    "log_likelihood",
    "nats_to_bpd",
    "to_levels",
]
