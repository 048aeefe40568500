"""Checks of integer sizes and positive numbers: the one validator of each kind, naming the setting.

Every layer uses these (data sets, training configs, generation settings); the message always
names the parameter and the allowed range, e.g. ``training.steps must be an integer >= 1, got 0``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["check_positive", "check_size"]


def check_size(name: str, value: Any, minimum: int = 1, note: str = "") -> int:
    """``value`` as an ``int`` >= ``minimum``, else a ``ValueError`` naming ``name``.

    Used for counts, sizes and cadences (``data.n``, ``training.steps``, ``n``, ``seed`` ...): a
    value below ``minimum``, a bool, a float or a string is refused instead of being truncated or
    ignored. ``note`` is appended to the allowed range in the message (e.g. ``" (0: off)"``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{note}, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any, allow_zero: bool = False, finite: bool = True) -> float:
    """``value`` as a ``float`` > 0 (>= 0 with ``allow_zero``), else a ValueError naming ``name``.

    NaN is always refused; infinity too unless ``finite=False``.
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and not math.isnan(value) and (math.isfinite(value) or not finite)
    if not ok or not (value >= 0 if allow_zero else value > 0):
        kind = "a finite number" if finite else "a number"
        raise ValueError(f"{name} must be {kind} {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)
