"""The torchdiffeq ODE solvers scoresde accepts: one list, shared by sampling and likelihood.

Adaptive solvers take ``rtol`` / ``atol``; fixed-step solvers run on a given time grid.
"""

from __future__ import annotations

__all__ = ["ADAPTIVE_SOLVERS", "FIXED_SOLVERS", "ODE_SOLVERS"]

ADAPTIVE_SOLVERS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_SOLVERS = ("euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams")
ODE_SOLVERS = ADAPTIVE_SOLVERS + FIXED_SOLVERS
