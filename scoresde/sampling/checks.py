"""Range checks for sampler options: one helper per kind of value, each raising a ValueError /
TypeError that names the option and the allowed values.

Integer and positive-number checks are :mod:`scoresde.checks` (the one validator of each kind);
``check_int`` / ``check_positive`` here are kept as thin, importable aliases with the sampler
defaults.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from scoresde import checks as _core

__all__ = ["check_bool", "check_choice", "check_int", "check_positive", "check_real"]


def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` must be one of ``allowed``."""
    if isinstance(value, bool) and not any(isinstance(a, bool) for a in allowed):
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def check_positive(name: str, value: Any, allow_zero: bool = False) -> float:
    """A real number > 0 (or >= 0); NaN refused, infinity allowed (sampler options never were
    required finite). Delegates to :func:`scoresde.checks.check_positive`."""
    return _core.check_positive(name, value, allow_zero=allow_zero, finite=False)


def check_real(name: str, value: Any) -> float:
    """A finite real number."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, minimum: int) -> int:
    """An integer >= ``minimum`` (bools rejected): :func:`scoresde.checks.check_size`."""
    return _core.check_size(name, value, minimum)


def check_bool(name: str, value: Any) -> bool:
    """A bool (not 0 / 1, not a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value
