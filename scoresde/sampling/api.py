"""``sample``: one entry point for every sampler, with input checks at the boundary.

    res = sample(sde, score_fn, (B, *dims), method="dpm_solver", steps=14, generator=g)
    res.x, res.nfe

Randomness: with ``generator`` (or ``seeds``, one integer per sample) every sample draws its prior
and step noise from its own counter-based stream (see :mod:`scoresde.sampling.noise`), so the same
seed gives the same samples and splitting a run into batches that share one generator (or slicing
``seeds``) gives the same samples as one big batch -- for every method except ``sde`` (torchsde's
Brownian interval is batch-wide). Without either, torch's global RNG is used batch-wise (fastest).
Sampling runs under ``torch.no_grad()``; a score function that needs gradients (classifier
guidance) must enable them itself with ``torch.enable_grad()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

import scoresde.sampling.methods  # noqa: F401  (registers the built-in methods)
from scoresde.sampling.checks import check_positive
from scoresde.sampling.context import ProjectFn, SamplerContext
from scoresde.sampling.correctors import CORRECTORS
from scoresde.sampling.grids import time_grid as make_grid
from scoresde.sampling.methods.ode import ODEOptions, ode_solve
from scoresde.sampling.noise import KeyedNoise, make_noise
from scoresde.sampling.predictors import PREDICTORS
from scoresde.sampling.registry import (
    METHODS,
    LiveNames,
    get_sampler,
    method_options,
    option_names,
)
from scoresde.sampling.result import SampleResult
from scoresde.sde import SDE, ScoreFn

__all__ = [
    "CORRECTOR_NAMES",
    "METHODS",
    "METHOD_DEFAULTS",
    "PREDICTOR_NAMES",
    "SampleResult",
    "encode",
    "method_defaults",
    "sample",
    "sample_adaptive",
    "sample_ancestral",
    "sample_annealed_langevin",
    "sample_ddim",
    "sample_dpm_solver",
    "sample_euler_maruyama",
    "sample_heun",
    "sample_ode",
    "sample_pc",
    "sample_reverse_diffusion",
    "sample_sde",
    "sample_unipc",
]

_PRIOR_COUNTER = 2**31 - 1  # keyed-noise counter reserved for the prior draw

PREDICTOR_NAMES = LiveNames(PREDICTORS)
CORRECTOR_NAMES = LiveNames(CORRECTORS)


def method_defaults(method: str) -> dict[str, Any]:
    """The default options of ``method`` as a dict (``steps`` None = sde.N / adaptive)."""
    return dataclasses.asdict(get_sampler(method).options())


class _Defaults(Mapping):
    """METHOD_DEFAULTS: method -> default options, read from the live registry."""

    def __getitem__(self, method: str) -> dict[str, Any]:
        if method not in METHODS:
            raise KeyError(method)
        return method_defaults(method)

    def __iter__(self):
        return iter(METHODS)

    def __len__(self) -> int:
        return len(METHODS)


METHOD_DEFAULTS: Mapping[str, dict[str, Any]] = _Defaults()


def _setup(sde, shape, x_init, t_start, eps, dtype, device, generator):
    if not isinstance(sde, SDE):
        raise TypeError(f"sde must be a scoresde.sde.SDE, got {type(sde).__name__}")
    if x_init is not None:
        if not isinstance(x_init, Tensor):
            raise TypeError("x_init must be a Tensor")
        if shape is not None and tuple(shape) != tuple(x_init.shape):
            raise ValueError(
                f"shape {tuple(shape)} does not match x_init.shape {tuple(x_init.shape)}"
            )
        shape = tuple(x_init.shape)
        dtype = x_init.dtype if dtype is None else dtype
        device = x_init.device if device is None else device
    if shape is None:
        raise ValueError("shape is required (or pass x_init)")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape) < 1:
        raise ValueError(f"shape must be (B, *dims) with positive sizes, got {shape}")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point dtype, got {dtype}")
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    T = float(sde.T)
    t_start = T if t_start is None else check_positive("t_start", t_start)
    if t_start > T:
        raise ValueError(f"t_start must lie in (0, T = {T}], got {t_start}")
    if x_init is None and t_start != T:
        raise ValueError("t_start < T needs x_init (the state at t_start)")
    eps = check_positive("eps", eps)
    if not eps < t_start:
        raise ValueError(f"eps must be < t_start = {t_start}, got {eps}")
    return shape, dtype, torch.device(device), t_start, eps


# ---------------------------------------------------------------------------- entry points
def sample(
    sde: SDE,
    score_fn: ScoreFn,
    shape: Sequence[int] | None = None,
    method: str = "pc",
    steps: int | None = None,
    *,
    generator: torch.Generator | None = None,
    seeds: Tensor | Sequence[int] | None = None,
    eps: float = 1e-3,
    denoise: bool = True,
    progress: bool = False,
    return_trajectory: bool = False,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    x_init: Tensor | None = None,
    t_start: float | None = None,
    project: ProjectFn | None = None,
    **options: Any,
) -> SampleResult:
    """Draw samples [B, *dims]: the reverse process from ``t_start`` (default T) to ``eps``.

    Args:
        sde: the forward SDE (VPSDE, SubVPSDE, VESDE).
        score_fn: ``score_fn(x [B, *dims], t [B]) -> [B, *dims]``.
        shape: (B, *dims); may be omitted when ``x_init`` is given.
        method: one of :data:`METHODS` (the live registry; see :func:`register_sampler`).
        steps: number of steps (grid intervals); None = the method's default (its options
            dataclass: ``sde.N`` for the SDE discretizations, adaptive for ode / adaptive).
        generator / seeds: reproducible, chunk-independent noise (see the module docstring).
        eps: end time of the reverse integration.
        denoise: finish with Tweedie's step x <- (x + std(eps)^2 s(x, eps)) / m(eps) (1 NFE).
        return_trajectory: keep the state after every step (``result.trajectory``).
        x_init, t_start: start from this state at t_start (SDEdit) instead of a prior sample at T.
        project: ``project(x, t) -> x`` applied after every predictor / corrector update (and after
            the final denoising, with t = 0).
        options: the method's options (the fields of its options dataclass, e.g.
            ``PCOptions``); an unknown or inapplicable key is a ValueError listing them.
    """
    spec = get_sampler(method)
    opts = method_options(method, steps=steps, **options)
    if project is not None and not spec.supports_project:
        raise ValueError(f"method {method!r} does not support project (use a grid method)")
    if x_init is not None and not spec.supports_x_init:
        raise ValueError(f"method {method!r} does not support x_init")
    eps = opts.end_time(sde, eps)
    shape, dtype, device, t_start, eps = _setup(
        sde, shape, x_init, t_start, eps, dtype, device, generator
    )
    if project is not None and not callable(project):
        raise TypeError("project must be callable project(x, t) -> x")
    noise = make_noise(shape, generator, seeds, dtype, device)
    ctx = SamplerContext(
        sde,
        score_fn,
        noise,
        project=project,
        record=return_trajectory,
        progress=progress,
        denoise=denoise,
        generator=generator,
    )
    with torch.no_grad():
        if x_init is not None:
            x = x_init.detach().to(dtype=dtype, device=device).clone()
        elif isinstance(noise, KeyedNoise):
            prior_counter = torch.full((shape[0],), _PRIOR_COUNTER, dtype=torch.long)
            x = noise.normal(counter=prior_counter) * sde.prior_std()
        else:
            x = sde.prior_sample(shape, None, dtype=dtype, device=device)
        x = spec.run(ctx, x, opts, t_start, eps)
        if denoise and not ctx.denoise_done:
            x = ctx.final_denoise(x, eps)
    times = ctx.grid
    traj = None
    if return_trajectory:
        traj = torch.stack(ctx.trajectory)
        times = torch.stack([torch.as_tensor(t, dtype=torch.float64).cpu() for t in ctx.times])
    return SampleResult(x=x, nfe=ctx.nfe, trajectory=traj, times=times)


def encode(
    sde: SDE,
    score_fn: ScoreFn,
    x: Tensor,
    *,
    eps: float = 1e-3,
    t_end: float | None = None,
    steps: int | None = None,
    solver: str | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    time_grid: str = "uniform",
    return_trajectory: bool = False,
) -> SampleResult:
    """Map data x [B, *dims] (taken as the state at ``eps``) to latents at ``t_end`` (default T) by
    integrating the probability-flow ODE forward. ``sample(method="ode", x_init=z, denoise=False,
    eps=eps)`` with the same solver settings inverts it (up to the solver tolerance)."""
    if not isinstance(x, Tensor):
        raise TypeError("x must be a Tensor")
    t_end = float(sde.T) if t_end is None else check_positive("t_end", t_end)
    opts = ODEOptions(steps=steps, solver=solver, rtol=rtol, atol=atol, time_grid=time_grid)
    _setup(sde, tuple(x.shape), x, t_end, eps, None, None, None)
    ctx = SamplerContext(sde, score_fn, make_noise(x.shape, None, None, x.dtype, x.device))
    if steps is None:
        ts = torch.linspace(eps, t_end, 21 if return_trajectory else 2, dtype=torch.float64)
    else:
        ts = make_grid(sde, t_end, eps, steps, time_grid).flip(0)
    with torch.no_grad():
        xs = ode_solve(ctx, x.detach().clone(), ts, opts.method, rtol, atol)
    return SampleResult(
        x=xs[-1], nfe=ctx.nfe, trajectory=xs if return_trajectory else None, times=ts
    )


def _method_function(method: str) -> Callable[..., SampleResult]:
    def run(
        sde: SDE,
        score_fn: ScoreFn,
        shape: Sequence[int] | None = None,
        steps: int | None = None,
        **kwargs: Any,
    ) -> SampleResult:
        return sample(sde, score_fn, shape, method=method, steps=steps, **kwargs)

    run.__name__ = run.__qualname__ = f"sample_{method}"
    run.__doc__ = (
        f"``sample(sde, score_fn, shape, method={method!r}, steps=steps, **kwargs)``; "
        f"options: {option_names(method)}."
    )
    return run


sample_euler_maruyama = _method_function("euler_maruyama")
sample_reverse_diffusion = _method_function("reverse_diffusion")
sample_ancestral = _method_function("ancestral")
sample_annealed_langevin = _method_function("annealed_langevin")
sample_pc = _method_function("pc")
sample_ode = _method_function("ode")
sample_sde = _method_function("sde")
sample_ddim = _method_function("ddim")
sample_heun = _method_function("heun")
sample_dpm_solver = _method_function("dpm_solver")
sample_adaptive = _method_function("adaptive")
sample_unipc = _method_function("unipc")
