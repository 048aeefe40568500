"""Compatibility: the few-step samplers now live in :mod:`scoresde.sampling.methods`."""

from scoresde.sampling.methods.unipc import UNIPC_VARIANTS, unipc_coefficients

__all__ = ["UNIPC_VARIANTS", "unipc_coefficients"]
