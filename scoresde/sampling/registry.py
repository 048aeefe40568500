"""The one registry of sampling methods.

A method is an options dataclass (a subclass of :class:`SamplerOptions`: its fields are the
method's options, their defaults and range checks live there and nowhere else), a function
``run(ctx, x, opts, t_start, eps) -> x`` (see :mod:`scoresde.sampling.loop` for the shared grid
loop) and its declared capabilities. ``sample()`` and :func:`method_options` look methods up here,
so a method added with :func:`register_sampler` from outside the package is a first-class one.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from scoresde.sampling.checks import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_real,
)
from scoresde.sampling.grids import GRIDS, eps_for_sigma
from scoresde.sde import SDE

__all__ = [
    "METHODS",
    "SAMPLE_KEYWORDS",
    "GridOptions",
    "LiveNames",
    "MultistepOptions",
    "SamplerOptions",
    "SamplerSpec",
    "get_sampler",
    "method_options",
    "option_names",
    "register_sampler",
]


@dataclass(frozen=True)
class SamplerOptions:
    """Options every method has: ``steps``, the number of steps (grid intervals); None = the
    method's own default (``sde.N`` for the SDE discretizations, adaptive for the adaptive
    solvers). Subclasses add fields and extend :meth:`check`."""

    steps: int | None = None

    def __post_init__(self) -> None:
        if self.steps is not None:
            check_int("steps", self.steps, 1)
        self.check()

    def check(self) -> None:
        """Range checks of the fields (raise ValueError / TypeError naming the option)."""

    def end_time(self, sde: SDE, eps: float) -> float:
        """The time the integration ends at (``eps`` unless an option overrides it)."""
        return eps


@dataclass(frozen=True)
class GridOptions(SamplerOptions):
    """Options of a method on a fixed time grid (:func:`scoresde.sampling.grids.time_grid`):
    ``time_grid`` (one of GRIDS), ``rho`` (karras), ``lambda_center`` / ``lambda_width`` (bump),
    ``end_sigma``: when not None the grid ends where sigma = std / m = end_sigma (overrides eps);
    ``timesteps``: an explicit grid t_0 = t_start > t_1 > ... > t_S (e.g. from
    :func:`scoresde.sampling.fit_timesteps`); it sets ``steps`` = S and the end time t_S and
    overrides ``time_grid`` and ``end_sigma``."""

    time_grid: str = "uniform"
    rho: float = 7.0
    lambda_center: float = 0.25
    lambda_width: float = 1.25
    end_sigma: float | None = None
    timesteps: tuple[float, ...] | None = None

    def check(self) -> None:
        check_choice("time_grid", self.time_grid, GRIDS)
        check_positive("rho", self.rho)
        check_real("lambda_center", self.lambda_center)
        check_positive("lambda_width", self.lambda_width)
        if self.end_sigma is not None:
            check_positive("end_sigma", self.end_sigma)
        if self.timesteps is not None:
            ts = check_timesteps(self.timesteps)
            object.__setattr__(self, "timesteps", ts)
            object.__setattr__(self, "steps", len(ts) - 1)

    def end_time(self, sde: SDE, eps: float) -> float:
        if self.timesteps is not None:
            return self.timesteps[-1]
        return eps if self.end_sigma is None else eps_for_sigma(sde, self.end_sigma)


def check_timesteps(value: Any) -> tuple[float, ...]:
    """An explicit time grid: >= 2 finite, positive, strictly decreasing numbers."""
    try:
        ts = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"timesteps must be a sequence of numbers, got {value!r}") from None
    ok = len(ts) >= 2 and all(math.isfinite(t) and t > 0 for t in ts)
    if not ok or any(b >= a for a, b in itertools.pairwise(ts)):
        raise ValueError(
            f"timesteps must be >= 2 positive, strictly decreasing times "
            f"(t_start > ... > end), got {list(value)!r}"
        )
    return ts


@dataclass(frozen=True)
class MultistepOptions(GridOptions):
    """A multistep method's ``order`` (one of the class's ``ORDERS``); step i uses order
    min(order, i + 1) (a lower-order start)."""

    ORDERS: ClassVar[tuple[int, ...]] = (1, 2, 3)
    order: int = 3

    def check(self) -> None:
        super().check()
        check_choice("order", self.order, list(self.ORDERS))


RunFn = Callable[[Any, Tensor, SamplerOptions, float, float], Tensor]


@dataclass(frozen=True)
class SamplerSpec:
    """A registered method.

    Attributes:
        name: the ``method=`` string.
        options: its options dataclass (a SamplerOptions subclass).
        run: ``run(ctx, x, opts, t_start, eps) -> x`` with ctx a SamplerContext, x [B, *dims] at
            t_start; it calls ``ctx.final_denoise`` itself only if it fuses the final step.
        stochastic: draws noise during the integration (not only for the prior).
        chunk_independent: with a generator / seeds, the same samples for any batch split.
        supports_project / supports_x_init: honours ``project`` / starts from ``x_init``.
        summary: one line for the README / listings.
    """

    name: str
    options: type[SamplerOptions]
    run: RunFn
    stochastic: bool
    chunk_independent: bool = True
    supports_project: bool = True
    supports_x_init: bool = True
    summary: str = ""


_REGISTRY: dict[str, SamplerSpec] = {}


class LiveNames(Sequence):
    """A read-only, always current view of a registry's names (a tuple-like sequence)."""

    def __init__(self, source: Mapping[str, Any]):
        self._source = source

    def __getitem__(self, i):
        return tuple(self._source)[i]

    def __len__(self) -> int:
        return len(self._source)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(self._source))

    def __contains__(self, name: object) -> bool:
        return name in self._source

    def __eq__(self, other: object) -> bool:
        return tuple(self) == tuple(other) if isinstance(other, Sequence) else NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


METHODS = LiveNames(_REGISTRY)

# keywords of sample() itself that may sit beside the method options in a sampler config
SAMPLE_KEYWORDS = ("eps", "denoise", "progress", "return_trajectory")


def register_sampler(
    name: str,
    options: type[SamplerOptions],
    run: RunFn,
    *,
    stochastic: bool,
    chunk_independent: bool = True,
    supports_project: bool = True,
    supports_x_init: bool = True,
    summary: str = "",
    replace: bool = False,
) -> SamplerSpec:
    """Add a method to ``sample()``, :data:`METHODS`, :func:`method_options` and the config check.

    ``options`` must be a dataclass subclassing :class:`SamplerOptions` (or :class:`GridOptions`)
    whose fields all have defaults; ``run(ctx, x, opts, t_start, eps)`` returns x at eps (most
    methods build a grid with :func:`scoresde.sampling.loop.grid_for` and call
    :func:`scoresde.sampling.loop.run_grid`). Re-registering a name needs ``replace=True``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be an identifier string, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"method {name!r} is already registered (pass replace=True)")
    if not (isinstance(options, type) and issubclass(options, SamplerOptions)):
        raise TypeError(f"options must be a SamplerOptions subclass, got {options!r}")
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"options {options.__name__} must be a dataclass")
    if not callable(run):
        raise TypeError("run must be callable run(ctx, x, opts, t_start, eps) -> x")
    for flag, value in (
        ("stochastic", stochastic),
        ("chunk_independent", chunk_independent),
        ("supports_project", supports_project),
        ("supports_x_init", supports_x_init),
    ):
        check_bool(flag, value)
    options()  # the defaults must pass the class's own checks
    spec = SamplerSpec(
        name,
        options,
        run,
        stochastic,
        chunk_independent,
        supports_project,
        supports_x_init,
        summary,
    )
    _REGISTRY[name] = spec
    return spec


def get_sampler(method: str) -> SamplerSpec:
    """The registered spec of ``method`` (ValueError listing the registered methods)."""
    if not isinstance(method, str) or method not in _REGISTRY:
        raise ValueError(f"method must be one of {list(_REGISTRY)}, got {method!r}")
    return _REGISTRY[method]


def option_names(method: str) -> tuple[str, ...]:
    """The option names of ``method`` (``steps`` included)."""
    return tuple(f.name for f in dataclasses.fields(get_sampler(method).options))


def method_options(method: str, **options: Any) -> SamplerOptions:
    """Validate ``options`` for ``method`` and return its options dataclass.

    Accepts the keys of a sampler config: the method's option names (``steps`` included; None
    keeps the default) and the keywords of ``sample()`` in :data:`SAMPLE_KEYWORDS` (``eps``,
    ``denoise``, ...), which are checked here but belong to ``sample()`` itself. An unknown or
    inapplicable key is a ValueError naming the method, the keys and the valid options.
    """
    spec = get_sampler(method)
    names = option_names(method)
    unknown = [k for k in options if k not in names and k not in SAMPLE_KEYWORDS]
    if unknown:
        valid = sorted(n for n in names if n != "steps")
        raise ValueError(
            f"unknown option(s) {unknown} for method {method!r}; valid options: {valid}"
        )
    if "eps" in options:
        check_positive("eps", options["eps"])
    for key in ("denoise", "progress", "return_trajectory"):
        if key in options:
            check_bool(key, options[key])
    kw = {k: v for k, v in options.items() if k in names and not (k == "steps" and v is None)}
    if kw.get("timesteps") is not None and "steps" in kw:
        n = len(check_timesteps(kw["timesteps"])) - 1
        if kw["steps"] != n:
            raise ValueError(
                f"steps must be None or len(timesteps) - 1 = {n} for method {method!r}, "
                f"got {kw['steps']!r}"
            )
    return spec.options(**kw)
