"""The value every sampler returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["SampleResult"]


@dataclass
class SampleResult:
    """Samples and bookkeeping.

    Attributes:
        x: [B, *dims] samples (or latents, for ``encode``).
        nfe: number of ``score_fn`` calls actually made (counted).
        trajectory: [K, B, *dims] states after every step when ``return_trajectory=True``,
            else None.
        times: the float64 time grid [K] the states belong to (per sample [K, B] for the adaptive
            solver; None for adaptive solvers without a trajectory).
    """

    x: Tensor
    nfe: int
    trajectory: Tensor | None = None
    times: Tensor | None = None
