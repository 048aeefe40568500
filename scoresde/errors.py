"""Error classes shared by the library and the command lines.

The command lines (:mod:`scoresde.cli`) map exceptions to exit codes: ``ValueError`` /
``TypeError`` / file errors -> 2 (bad input or config), :class:`NonFiniteError` -> 3, anything
else -> 1. Library code raises these (or the built-in classes) with a message that names the
parameter or the path and what is allowed.
"""

from __future__ import annotations

__all__ = ["ConfigError", "NonFiniteError"]


class NonFiniteError(RuntimeError):
    """A computation produced NaN or inf (a diverged loss, sampler or ODE solve).

    The message names where (the step, the time, the batch) and, when there is one, the last
    good checkpoint. Command lines exit with code 3.
    """


class ConfigError(ValueError):
    """A configuration that cannot be run: an unknown key, a bad group option or value.

    Command lines exit with code 2 and print the message (which names the key and the choices).
    """
