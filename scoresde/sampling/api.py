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

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from scoresde.sampling.adaptive import run_adaptive
from scoresde.sampling.context import ProjectFn, SamplerContext
from scoresde.sampling.correctors import CORRECTORS, LANGEVIN_NORMS
from scoresde.sampling.ddim import run_ddim
from scoresde.sampling.fast import UNIPC_VARIANTS, run_dpm_solver, run_heun, run_unipc
from scoresde.sampling.grids import GRIDS, eps_for_sigma
from scoresde.sampling.grids import time_grid as make_grid
from scoresde.sampling.noise import KeyedNoise, make_noise
from scoresde.sampling.ode import ADAPTIVE_SOLVERS, FIXED_SOLVERS, ODE_SOLVERS, run_ode
from scoresde.sampling.pc import run_pc
from scoresde.sampling.predictors import PREDICTORS
from scoresde.sampling.result import SampleResult
from scoresde.sampling.sdeint import SDE_SOLVERS, run_sdeint
from scoresde.sde import SDE, ScoreFn

__all__ = [
    "CORRECTOR_NAMES",
    "METHODS",
    "METHOD_DEFAULTS",
    "PREDICTOR_NAMES",
    "SampleResult",
    "encode",
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

PREDICTOR_NAMES = tuple(PREDICTORS)
CORRECTOR_NAMES = tuple(CORRECTORS)

# method -> default options (the keys are the options it accepts; "steps" is the default step count,
# None meaning sde.N)
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "euler_maruyama": {"steps": None, "time_grid": "uniform"},
    "reverse_diffusion": {"steps": None, "time_grid": "uniform"},
    "ancestral": {"steps": None, "time_grid": "uniform"},
    "annealed_langevin": {
        "steps": None,
        "time_grid": "uniform",
        "snr": 0.16,
        "corrector_steps": 1,
        "step_size": None,
    },
    "pc": {
        "steps": None,
        "time_grid": "uniform",
        "predictor": "reverse_diffusion",
        "corrector": "langevin",
        "snr": 0.16,
        "corrector_steps": 1,
        "langevin_norm": "per_sample",
        "step_size": None,
    },
    "ode": {
        "steps": "adaptive",
        "solver": None,
        "rtol": 1e-5,
        "atol": 1e-5,
        "time_grid": "uniform",
    },
    "sde": {"steps": None, "solver": "euler", "adaptive": False, "rtol": 1e-3, "atol": 1e-3},
    "ddim": {"steps": 50, "eta": 0.0, "time_grid": "logsnr"},
    "heun": {"steps": 18, "time_grid": "karras", "rho": 7.0},
    "dpm_solver": {"steps": 14, "order": 3, "time_grid": "logsnr", "lower_order_final": True},
    "unipc": {
        "steps": 14,
        "order": 3,
        "variant": "bh2",
        "time_grid": "bump",
        "rho": 7.0,
        "lambda_center": 0.25,
        "lambda_width": 1.25,
        "lower_order_final": True,
        "corrector": True,
        "final_corrector": True,
        "end_sigma": 0.02,
    },
    "adaptive": {
        "steps": "adaptive",
        "rtol": 0.05,
        "atol": 0.01,
        "max_iters": 100_000,
        "error_norm": "batch",
    },
}
METHODS = tuple(METHOD_DEFAULTS)


# ---------------------------------------------------------------------------- validation
def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _positive(name: str, value: Any, allow_zero: bool = False) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not (value >= 0 if allow_zero else value > 0) or math.isnan(value):
        raise ValueError(
            f"{name} must be a number {'>= 0' if allow_zero else '> 0'}, got {value!r}"
        )
    return float(value)


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _options(method: str, steps: int | None, options: dict[str, Any]) -> dict[str, Any]:
    defaults = METHOD_DEFAULTS[method]
    unknown = [k for k in options if k not in defaults or k == "steps"]
    if unknown:
        valid = sorted(k for k in defaults if k != "steps")
        raise ValueError(
            f"unknown option(s) {unknown} for method {method!r}; valid options: {valid}"
        )
    opts = {**defaults, **options}
    opts["steps"] = defaults["steps"] if steps is None else _int("steps", steps, 1)
    if "time_grid" in opts:
        _choice("time_grid", opts["time_grid"], GRIDS)
    if "predictor" in opts:
        _choice("predictor", opts["predictor"], PREDICTOR_NAMES)
    if "corrector" in opts and method == "unipc":
        for key in ("corrector", "final_corrector", "lower_order_final"):
            if not isinstance(opts[key], bool):
                raise TypeError(f"{key} must be a bool, got {opts[key]!r}")
        _choice("variant", opts["variant"], UNIPC_VARIANTS)
        if opts["end_sigma"] is not None:
            _positive("end_sigma", opts["end_sigma"])
    elif "corrector" in opts:
        _choice("corrector", opts["corrector"], CORRECTOR_NAMES)
    if "langevin_norm" in opts:
        _choice("langevin_norm", opts["langevin_norm"], LANGEVIN_NORMS)
    for key in ("snr", "rtol", "atol", "rho"):
        if key in opts:
            _positive(key, opts[key])
    if opts.get("step_size") is not None:
        _positive("step_size", opts["step_size"])
    if "corrector_steps" in opts:
        _int("corrector_steps", opts["corrector_steps"], 0)
    if "eta" in opts:
        _positive("eta", opts["eta"], allow_zero=True)
    orders = [1, 2, 3, 4] if method == "unipc" else [1, 2, 3]
    if "order" in opts and (opts["order"] not in orders or isinstance(opts["order"], bool)):
        raise ValueError(f"order must be one of {orders}, got {opts['order']!r}")
    if "lambda_width" in opts:
        _positive("lambda_width", opts["lambda_width"])
    if "lambda_center" in opts and (
        not isinstance(opts["lambda_center"], numbers.Real)
        or isinstance(opts["lambda_center"], bool)
        or not math.isfinite(opts["lambda_center"])
    ):
        raise ValueError(f"lambda_center must be a finite number, got {opts['lambda_center']!r}")
    if "error_norm" in opts:
        _choice("error_norm", opts["error_norm"], ("batch", "per_sample"))
    if "max_iters" in opts:
        _int("max_iters", opts["max_iters"], 1)
    if method == "sde":
        _choice("solver", opts["solver"], SDE_SOLVERS)
        if not isinstance(opts["adaptive"], bool):
            raise ValueError(f"adaptive must be a bool, got {opts['adaptive']!r}")
    if method == "ode":
        fixed = opts["steps"] != "adaptive"
        if opts["solver"] is None:
            opts["solver"] = "rk4" if fixed else "dopri5"
        _choice("solver", opts["solver"], ODE_SOLVERS)
        if fixed and opts["solver"] in ADAPTIVE_SOLVERS:
            raise ValueError(
                f"steps fixes the grid: solver must be one of {list(FIXED_SOLVERS)}, got {opts['solver']!r}"
                " (leave steps=None for adaptive solvers)"
            )
        if not fixed and opts["solver"] in FIXED_SOLVERS:
            raise ValueError(f"solver {opts['solver']!r} is fixed-step: pass steps")
    return opts


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
    t_start = T if t_start is None else _positive("t_start", t_start)
    if t_start > T:
        raise ValueError(f"t_start must lie in (0, T = {T}], got {t_start}")
    if x_init is None and t_start != T:
        raise ValueError("t_start < T needs x_init (the state at t_start)")
    eps = _positive("eps", eps)
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
    """Draw samples [B, *dims] by integrating the reverse process from ``t_start`` (default T) to ``eps``.

    Args:
        sde: the forward SDE (VPSDE, SubVPSDE, VESDE).
        score_fn: ``score_fn(x [B, *dims], t [B]) -> [B, *dims]``.
        shape: (B, *dims); may be omitted when ``x_init`` is given.
        method: one of :data:`METHODS`.
        steps: number of steps (grid intervals); defaults per method (:data:`METHOD_DEFAULTS`).
        generator / seeds: reproducible, chunk-independent noise (see the module docstring).
        eps: end time of the reverse integration.
        denoise: finish with Tweedie's step x <- (x + std(eps)^2 s(x, eps)) / m(eps) (1 NFE).
        return_trajectory: keep the state after every step (``result.trajectory``).
        x_init, t_start: start from this state at t_start (SDEdit) instead of a prior sample at T.
        project: ``project(x, t) -> x`` applied after every predictor / corrector update (and after
            the final denoising, with t = 0).
        options: method options -- ``predictor``, ``corrector``, ``snr``, ``corrector_steps``,
            ``langevin_norm``, ``step_size``, ``solver``, ``rtol``, ``atol``, ``adaptive``, ``eta``,
            ``order``, ``time_grid``, ``rho``, ``lower_order_final``, ``max_iters``, ``error_norm``;
            ``unipc`` also takes ``variant`` ("bh1"|"bh2"), ``corrector`` (bool: UniC on/off),
            ``final_corrector`` (UniC on the last step, reusing the denoising evaluation),
            ``lambda_center`` / ``lambda_width`` (the ``bump`` grid) and ``end_sigma``: when not
            None the grid ends where sigma = std / m = end_sigma (this overrides ``eps``).
    """
    _choice("method", method, METHODS)
    opts = _options(method, steps, options)
    if opts.get("end_sigma") is not None:  # end where sigma = std / m = end_sigma (overrides eps)
        eps = eps_for_sigma(sde, opts["end_sigma"])
    shape, dtype, device, t_start, eps = _setup(
        sde, shape, x_init, t_start, eps, dtype, device, generator
    )
    if project is not None and not callable(project):
        raise TypeError("project must be callable project(x, t) -> x")
    noise = make_noise(shape, generator, seeds, dtype, device)
    ctx = SamplerContext(
        sde, score_fn, noise, project=project, record=return_trajectory, progress=progress
    )
    with torch.no_grad():
        if x_init is not None:
            x = x_init.detach().to(dtype=dtype, device=device).clone()
        elif isinstance(noise, KeyedNoise):
            prior_counter = torch.full((shape[0],), _PRIOR_COUNTER, dtype=torch.long)
            x = noise.normal(counter=prior_counter) * sde.prior_std()
        else:
            x = sde.prior_sample(shape, None, dtype=dtype, device=device)
        steps_ = sde.N if opts["steps"] is None else opts["steps"]
        if method == "unipc":  # UniC on the last step reuses the final denoising evaluation
            opts = {**opts, "final_corrector": bool(opts["final_corrector"] and denoise)}
        x, times = _RUNNERS[method](ctx, x, t_start, eps, steps_, opts, generator)
        if denoise and not opts.get("final_corrector", False):
            eps_t = torch.tensor(eps, dtype=torch.float64)
            m, std = (float(v) for v in sde.marginal_coeffs(eps_t))
            x = ctx.denoised(x, torch.full((shape[0],), eps, dtype=dtype, device=device), m, std)
            x = ctx.project(x, torch.zeros(shape[0], dtype=dtype, device=device))
            ctx.record(
                x,
                torch.zeros((), dtype=torch.float64)
                if times is None or times.dim() == 1
                else torch.zeros(shape[0], dtype=torch.float64),
            )
    traj = None
    if return_trajectory:
        traj = torch.stack(ctx.trajectory)
        times = torch.stack([torch.as_tensor(t, dtype=torch.float64).cpu() for t in ctx.times])
    return SampleResult(x=x, nfe=ctx.nfe, trajectory=traj, times=times)


def _grid(ctx, t_start, eps, steps, opts):
    return make_grid(
        ctx.sde,
        t_start,
        eps,
        steps,
        opts.get("time_grid", "uniform"),
        opts.get("rho", 7.0),
        opts.get("lambda_center", 0.25),
        opts.get("lambda_width", 1.25),
    )


def _run_pc(ctx, x, t_start, eps, steps, opts, generator, predictor=None, corrector=None):
    pred = PREDICTORS[predictor or opts.get("predictor")]()
    corr_name = corrector or opts.get("corrector")
    sigma_last = float(ctx.sde.marginal_coeffs(torch.tensor(eps, dtype=torch.float64))[1])
    corr = CORRECTORS[corr_name](
        snr=opts.get("snr", 0.16),
        n_steps=opts.get("corrector_steps", 1),
        norm=opts.get("langevin_norm", "per_sample"),
        step_size=opts.get("step_size"),
        sigma_last=sigma_last,
    )
    grid = _grid(ctx, t_start, eps, steps, opts)
    return run_pc(ctx, x, grid, pred, corr), grid


def _pc_runner(predictor: str, corrector: str) -> Callable:
    def run(ctx, x, t_start, eps, steps, opts, generator):
        return _run_pc(ctx, x, t_start, eps, steps, opts, generator, predictor, corrector)

    return run


def _run_ode(ctx, x, t_start, eps, steps, opts, generator):
    if opts["steps"] == "adaptive":
        n = 21 if ctx.record_on else 2
        ts = torch.linspace(t_start, eps, n, dtype=torch.float64)
    else:
        ts = _grid(ctx, t_start, eps, steps, opts)
    x, xs = run_ode(ctx, x, ts, opts["solver"], opts["rtol"], opts["atol"])
    if ctx.record_on:
        ctx.trajectory.extend(list(xs))
        ctx.times.extend(list(ts))
    return x, ts


def _run_sde(ctx, x, t_start, eps, steps, opts, generator):
    gen_dev = generator.device if generator is not None else "cpu"
    entropy = int(torch.randint(0, 2**62, (1,), generator=generator, device=gen_dev))
    x, xs, ts = run_sdeint(
        ctx,
        x,
        t_start,
        eps,
        steps,
        opts["solver"],
        opts["adaptive"],
        opts["rtol"],
        opts["atol"],
        entropy=entropy,
        record_points=(steps + 1 if ctx.record_on else 0),
    )
    if ctx.record_on:
        ctx.trajectory.extend(list(xs))
        ctx.times.extend(list(ts))
    return x, ts


def _run_ddim(ctx, x, t_start, eps, steps, opts, generator):
    grid = _grid(ctx, t_start, eps, steps, opts)
    return run_ddim(ctx, x, grid, opts["eta"]), grid


def _run_heun(ctx, x, t_start, eps, steps, opts, generator):
    grid = _grid(ctx, t_start, eps, steps, opts)
    return run_heun(ctx, x, grid), grid


def _run_dpm(ctx, x, t_start, eps, steps, opts, generator):
    grid = _grid(ctx, t_start, eps, steps, opts)
    return run_dpm_solver(ctx, x, grid, opts["order"], bool(opts["lower_order_final"])), grid


def _run_unipc(ctx, x, t_start, eps, steps, opts, generator):
    grid = _grid(ctx, t_start, eps, steps, opts)
    x = run_unipc(
        ctx,
        x,
        grid,
        opts["order"],
        opts["variant"],
        opts["corrector"],
        opts["lower_order_final"],
        opts["final_corrector"],
    )
    return x, grid


def _run_adaptive(ctx, x, t_start, eps, steps, opts, generator):
    h_init = 0.01 if opts["steps"] == "adaptive" else (t_start - eps) / steps
    x = run_adaptive(
        ctx,
        x,
        t_start,
        eps,
        opts["rtol"],
        opts["atol"],
        h_init,
        max_iters=opts["max_iters"],
        error_norm=opts["error_norm"],
    )
    return x, None


_RUNNERS: dict[str, Callable] = {
    "euler_maruyama": _pc_runner("euler_maruyama", "none"),
    "reverse_diffusion": _pc_runner("reverse_diffusion", "none"),
    "ancestral": _pc_runner("ancestral", "none"),
    "annealed_langevin": _pc_runner("none", "annealed_langevin"),
    "pc": _pc_runner(None, None),
    "ode": _run_ode,
    "sde": _run_sde,
    "ddim": _run_ddim,
    "heun": _run_heun,
    "dpm_solver": _run_dpm,
    "unipc": _run_unipc,
    "adaptive": _run_adaptive,
}


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
    t_end = float(sde.T) if t_end is None else _positive("t_end", t_end)
    opts = _options(
        "ode", steps, {"solver": solver, "rtol": rtol, "atol": atol, "time_grid": time_grid}
    )
    _setup(sde, tuple(x.shape), x, t_end, eps, None, None, None)
    ctx = SamplerContext(sde, score_fn, make_noise(x.shape, None, None, x.dtype, x.device))
    if opts["steps"] == "adaptive":
        ts = torch.linspace(eps, t_end, 21 if return_trajectory else 2, dtype=torch.float64)
    else:
        ts = make_grid(sde, t_end, eps, opts["steps"], time_grid).flip(0)
    with torch.no_grad():
        z, xs = run_ode(ctx, x.detach().clone(), ts, opts["solver"], opts["rtol"], opts["atol"])
    return SampleResult(x=z, nfe=ctx.nfe, trajectory=xs if return_trajectory else None, times=ts)


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
        f"defaults {METHOD_DEFAULTS[method]}."
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
