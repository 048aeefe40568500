"""The built-in sampling methods, one module per paper; importing this package registers them
(in this order, which is the order of ``METHODS``)."""

from scoresde.sampling.methods import pc  # noqa: I001  (registration order)
from scoresde.sampling.methods import ode, sdeint, ddim, heun, dpm_solver, unipc, adaptive
from scoresde.sampling.methods import deis

__all__ = ["adaptive", "ddim", "deis", "dpm_solver", "heun", "ode", "pc", "sdeint", "unipc"]
