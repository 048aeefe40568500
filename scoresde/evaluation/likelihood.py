"""Likelihood of a trained run on a dataset split.

The library behind ``python -m scoresde.likelihood``.

Loads the run with :func:`scoresde.io.runs.load_run` (EMA weights), integrates the probability-flow
ODE batch by batch, and writes ``likelihood.json`` (settings, per-batch values, result, versions)
atomically into the output dir after every batch. Images (data with discrete ``levels``) are
reported in bits/dim (:func:`bits_per_dim`, uniform dequantization), vectors as NLL in nats. With
``bound`` the variational bound (:mod:`scoresde.likelihood.bounds`) is computed beside it on the
same points, each with its standard error. The file holds no timings, so a resumed run writes
exactly the bytes of an uninterrupted one.

Resuming: each batch has its own generator seeded from ``(seed, batch index)``, so a run that is
stopped (killed, or ``max_batches``) and restarted with the same output dir
(``hydra.run.dir=...``) and settings skips the batches already done and ends with exactly the
numbers of an uninterrupted run. ``resume=PATH`` continues from a previous ``likelihood.json``.
See ``conf/likelihood.yaml`` or ``--help`` for the options.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from scoresde.data import get_batch
from scoresde.evaluation.likelihood_records import (
    FORMAT,
    RESULT_FILE,
    LikelihoodCLIError,
    batch_seed,
    load_previous,
    report,
    settings,
    summary,
    versions,
)
from scoresde.io import distributed
from scoresde.io.atomic import write_json_atomic
from scoresde.io.checkpoint import CheckpointError
from scoresde.io.runs import build_dataset, load_run
from scoresde.likelihood.bounds import BOUNDS, elbo
from scoresde.likelihood.bpd import bits_per_dim
from scoresde.likelihood.ode_likelihood import ODE_METHODS, log_likelihood
from scoresde.likelihood.trace import TRACE_ESTIMATORS

__all__ = ["LikelihoodCLIError", "bound_name", "evaluate", "report"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def bound_name(value: Any) -> str | None:
    """The ``bound`` option: false/null -> None, true -> "continuous", or a name in BOUNDS."""
    if value is None or value is False:
        return None
    if value is True:
        return "continuous"
    if isinstance(value, str) and value in BOUNDS:
        return value
    raise LikelihoodCLIError(
        f"bound must be one of false, true, {', '.join(BOUNDS)} (true = continuous), got {value!r}"
    )


def _check_options(cfg: DictConfig) -> None:
    if not cfg.ckpt:
        raise LikelihoodCLIError("ckpt is required: ckpt=<run directory or checkpoint file>")
    if cfg.split not in ("train", "test"):
        raise LikelihoodCLIError(f"split must be 'train' or 'test', got {cfg.split!r}")
    bound_name(cfg.bound)
    if cfg.bound and cfg.use_labels:
        raise LikelihoodCLIError("bound does not support use_labels=true (unconditional only)")
    for key in ("batch_size", "repeats", "probes", "bound_samples"):
        v = cfg[key]
        if key == "probes" and v is None:  # the trace's default
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise LikelihoodCLIError(f"{key} must be an integer >= 1, got {v!r}")
    if cfg.nodes is not None and not (type(cfg.nodes) is int and cfg.nodes >= 3 and cfg.nodes % 2):
        raise LikelihoodCLIError(f"nodes must be null or an odd integer >= 3, got {cfg.nodes!r}")
    for key in ("max_samples", "max_batches"):
        v = cfg[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise LikelihoodCLIError(f"{key} must be null or an integer >= 1, got {v!r}")
    if cfg.trace not in TRACE_ESTIMATORS:
        raise LikelihoodCLIError(
            f"trace must be one of {list(TRACE_ESTIMATORS)}, got {cfg.trace!r}"
        )
    if cfg.method is not None and cfg.method not in ODE_METHODS:
        raise LikelihoodCLIError(
            f"method must be null or one of {list(ODE_METHODS)}, got {cfg.method!r}"
        )
    for key in ("rtol", "atol", "eps"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise LikelihoodCLIError(f"{key} must be a positive number, got {v!r}")
    if cfg.dtype not in _DTYPES:
        raise LikelihoodCLIError(f"dtype must be one of {list(_DTYPES)}, got {cfg.dtype!r}")
    try:
        distributed.resolve_device(cfg.device)
    except ValueError as e:
        raise LikelihoodCLIError(str(e)) from e


# ------------------------------------------------------------------------------------ the run


def evaluate(
    cfg: DictConfig,
    output_dir: Path,
    log: Callable[[dict[str, Any], int], None] | None = None,
    process: distributed.ProcessInfo | None = None,
) -> dict[str, Any]:
    """Run the evaluation described by ``cfg`` into ``output_dir``; returns the written record.

    Under torchrun (``process.world > 1``) the batches still to do are sharded over the ranks
    (rank r takes every W-th), each computed exactly as one process would (same items, same
    per-batch seed); rank 0 gathers them and alone writes ``likelihood.json`` (after each of its own
    batches, and complete at the end), so the file equals a one-process run's.
    """
    _check_options(cfg)
    device = distributed.resolve_device(
        cfg.device, process.local_rank if process is not None else 0
    )
    dtype = _DTYPES[cfg.dtype]
    try:
        run = load_run(cfg.ckpt, device=device, use_ema=bool(cfg.use_ema))
    except CheckpointError as e:
        raise LikelihoodCLIError(f"cannot load checkpoint: {e}") from e
    except (KeyError, TypeError) as e:
        raise LikelihoodCLIError(
            f"incompatible checkpoint {cfg.ckpt}: {type(e).__name__}: {e}"
        ) from e
    sde, model = run.sde, run.model.to(dtype)
    if not 0 < cfg.eps < sde.T:
        raise LikelihoodCLIError(f"eps must lie in (0, T) = (0, {sde.T}), got {cfg.eps}")

    data_cfg = OmegaConf.merge(run.cfg.data, cfg.data) if cfg.data else run.cfg.data
    try:
        ds = build_dataset(data_cfg, cfg.split)
    except (OSError, ValueError) as e:
        raise LikelihoodCLIError(f"cannot load the {cfg.split} split of the run's data: {e}") from e
    info = {**getattr(ds, "info", {}), **run.data_info}
    shape = tuple(int(s) for s in info["shape"])
    levels = info.get("levels")
    data_range = info.get("data_range") or (-1.0, 1.0)
    unit = "bits/dim" if levels else "nats"
    dim = int(math.prod(shape))
    bound = bound_name(cfg.bound)
    if bound == "ddpm" and not levels:
        raise LikelihoodCLIError("bound=ddpm needs discrete data (images with levels)")
    if cfg.use_labels and not (OmegaConf.select(run.cfg, "model.conditional") or False):
        raise LikelihoodCLIError(
            "use_labels=true needs a conditional model (model.conditional=true)"
        )

    n_total = len(ds) if cfg.max_samples is None else min(len(ds), int(cfg.max_samples))
    n_batches = math.ceil(n_total / cfg.batch_size)
    out_file = Path(output_dir) / RESULT_FILE
    run_settings = settings(cfg, run.checkpoint, run.step)
    batches = [b for b in load_previous(cfg, out_file, run_settings) if b["index"] < n_batches]
    done = {b["index"] for b in batches}
    record: dict[str, Any] = {
        "format": FORMAT,
        "settings": run_settings,
        "unit": unit,
        "dim": dim,
        "shape": list(shape),
        "levels": levels,
        "data_range": list(data_range) if levels else None,
        "n_total": n_total,
        "n_batches": n_batches,
        "device": str(device),
        "versions": versions(),
        "batches": batches,
    }

    todo = [b for b in range(n_batches) if b not in done]
    if cfg.max_batches is not None:
        todo = todo[: int(cfg.max_batches)]
    process = process or distributed.process_info()
    todo = todo[distributed.shard_slice(len(todo), process)]
    write = process.is_main
    bar = tqdm(
        total=n_batches,
        initial=len(done),
        disable=not cfg.progress,
        desc=f"likelihood ({unit})",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    try:
        for b in todo:
            idx = list(range(b * cfg.batch_size, min(n_total, (b + 1) * cfg.batch_size)))
            x, y = get_batch(ds, idx)
            if tuple(x.shape[1:]) != shape:
                raise LikelihoodCLIError(
                    f"data shape {tuple(x.shape[1:])} does not match the model's {shape}"
                )
            x = x.to(device=device, dtype=dtype)
            gen = torch.Generator(device=device).manual_seed(batch_seed(cfg.seed, b))
            reps = cfg.repeats if levels else 1
            y_rep = y.to(device).repeat(reps) if (cfg.use_labels and y is not None) else None
            score_fn = model if y_rep is None else (lambda xx, tt, _y=y_rep: model(xx, tt, _y))
            opts = {
                "trace": cfg.trace,
                "method": cfg.method,
                "rtol": float(cfg.rtol),
                "atol": float(cfg.atol),
                "eps": float(cfg.eps),
                "probes": cfg.probes,
                "nodes": cfg.nodes,
            }
            with torch.no_grad():
                if levels:
                    res = bits_per_dim(
                        sde,
                        score_fn,
                        x,
                        levels=int(levels),
                        data_range=data_range,
                        repeats=int(cfg.repeats),
                        generator=gen,
                        dtype=dtype,
                        **opts,
                    )
                    values, nfe = res.per_sample, res.nfe
                else:
                    res = log_likelihood(sde, score_fn, x, generator=gen, **opts)
                    values, nfe = -res.logp, res.nfe
            values = [float(v) for v in values.cpu()]
            if not all(math.isfinite(v) for v in values):
                raise LikelihoodCLIError(f"batch {b}: non-finite likelihood (diverged ODE solve?)")
            entry = {"index": b, "start": idx[0], "n": len(idx), "values": values, "nfe": int(nfe)}
            if bound:
                bgen = torch.Generator(device=device).manual_seed(batch_seed(cfg.seed + 1, b))
                bv, bse = _bound_values(cfg, bound, sde, model, x, levels, data_range, dtype, bgen)
                if not all(math.isfinite(v) for v in bv + bse):
                    raise LikelihoodCLIError(f"batch {b}: non-finite variational bound")
                entry.update(bound_values=bv, bound_stderr=bse)
            batches.append(entry)
            batches.sort(key=lambda r: r["index"])
            record["result"] = summary(batches, dim, unit)
            record["complete"] = len(batches) == n_batches
            if write:
                write_json_atomic(out_file, record)
            bar.update(1)
            bar.set_postfix(mean=f"{record['result']['mean']:.4f}", nfe=int(nfe))
            if log is not None:
                log(
                    {
                        "likelihood/batch_mean": float(np.mean(values)),
                        "likelihood/running_mean": record["result"]["mean"],
                        "likelihood/nfe": int(nfe),
                    },
                    b,
                )
    finally:
        bar.close()
    if process.world > 1:
        gathered = distributed.gather_objects(batches)
        if gathered is None:  # not rank 0: rank 0 writes the file
            record["result"], record["complete"] = summary(batches, dim, unit), False
            return record
        merged = {b["index"]: b for part in gathered for b in part}
        batches[:] = [merged[i] for i in sorted(merged)]
    record["result"] = summary(batches, dim, unit)
    record["complete"] = len(batches) == n_batches
    write_json_atomic(out_file, record)
    if log is not None and record["result"]["n"]:
        r = record["result"]
        final = {"likelihood/mean": r["mean"], "likelihood/stderr": r.get("stderr") or 0.0}
        if "bound" in r:
            final["likelihood/bound_mean"] = r["bound"]["mean"]
        log(final, len(batches))
    return record


def _bound_values(cfg, bound, sde, model, x, levels, data_range, dtype, gen):
    """Per-point bound values and their standard errors (bits/dim for images, nats otherwise)."""
    samples = int(cfg.bound_samples)
    with torch.no_grad():
        if levels:
            kw = {"eps": float(cfg.eps)} if bound == "continuous" else {}
            r = bits_per_dim(
                sde,
                model,
                x,
                levels=int(levels),
                data_range=data_range,
                repeats=int(cfg.repeats),
                generator=gen,
                dtype=dtype,
                bound=bound,
                bound_samples=samples,
                **kw,
            )
            vals, se = r.per_sample, r.point_stderr
        else:
            r = elbo(sde, model, x, samples=samples, eps=float(cfg.eps), generator=gen)
            vals, se = -r.elbo, r.stderr
    return [float(v) for v in vals.cpu()], [float(v) for v in se.cpu()]
