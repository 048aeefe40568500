"""Checks of the sizes and numbers the data sets take (one place, named in every message)."""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_positive", "check_size"]


def check_size(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an ``int`` >= ``minimum``, else a ``ValueError`` naming ``name``.

    Used for counts and sizes (``data.n``, ``data.n_test``, ``data.image_size`` ...): a zero, a
    negative number, a float or a string is refused instead of being truncated or ignored.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` > 0, else a ``ValueError`` naming ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
