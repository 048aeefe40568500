"""``python -m scoresde.likelihood``: likelihood of a trained run on a dataset split.

Loads the run with :func:`scoresde.io.runs.load_run` (EMA weights), integrates the probability-flow
ODE batch by batch, and writes ``likelihood.json`` (settings, per-batch values, result, versions)
atomically into the Hydra output dir after every batch. Images (data with discrete ``levels``) are
reported in bits/dim (:func:`bits_per_dim`, uniform dequantization), vectors as NLL in nats.

Resuming: each batch has its own generator seeded from ``(seed, batch index)``, so a run that is
stopped (killed, or ``max_batches``) and restarted with the same output dir
(``hydra.run.dir=...``) and settings skips the batches already done and ends with exactly the
numbers of an uninterrupted run. ``resume=PATH`` continues from a previous ``likelihood.json``.
See ``conf/likelihood.yaml`` or ``--help`` for the options.
"""

from __future__ import annotations

import json
import math
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from scoresde.io.atomic import write_json_atomic
from scoresde.likelihood.bpd import bits_per_dim
from scoresde.likelihood.ode_likelihood import ODE_METHODS, log_likelihood
from scoresde.likelihood.trace import TRACE_ESTIMATORS

FORMAT = "scoresde-likelihood-v1"
RESULT_FILE = "likelihood.json"
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


class LikelihoodCLIError(ValueError):
    """A user-facing error of the command line (bad option, unusable checkpoint or data)."""


# ------------------------------------------------------------------------------------ helpers
def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("scoresde", "torchdiffeq"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def _batch_seed(seed: int, index: int) -> int:
    return int(
        np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1
    )


def _check_options(cfg: DictConfig) -> None:
    if not cfg.ckpt:
        raise LikelihoodCLIError("ckpt is required: ckpt=<run directory or checkpoint file>")
    if cfg.split not in ("train", "test"):
        raise LikelihoodCLIError(f"split must be 'train' or 'test', got {cfg.split!r}")
    for key in ("batch_size", "repeats", "probes"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise LikelihoodCLIError(f"{key} must be an integer >= 1, got {v!r}")
    for key in ("max_samples", "max_batches"):
        v = cfg[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise LikelihoodCLIError(f"{key} must be null or an integer >= 1, got {v!r}")
    if cfg.trace not in TRACE_ESTIMATORS:
        raise LikelihoodCLIError(
            f"trace must be one of {list(TRACE_ESTIMATORS)}, got {cfg.trace!r}"
        )
    if cfg.method not in ODE_METHODS:
        raise LikelihoodCLIError(f"method must be one of {list(ODE_METHODS)}, got {cfg.method!r}")
    for key in ("rtol", "atol", "eps"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise LikelihoodCLIError(f"{key} must be a positive number, got {v!r}")
    if cfg.dtype not in _DTYPES:
        raise LikelihoodCLIError(f"dtype must be one of {list(_DTYPES)}, got {cfg.dtype!r}")
    try:
        dev = torch.device(cfg.device)
    except RuntimeError as e:
        raise LikelihoodCLIError(f"device must be cpu, cuda or cuda:N, got {cfg.device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LikelihoodCLIError(f"device={cfg.device!r} but CUDA is not available")


def _settings(cfg: DictConfig, checkpoint: Path, step: int) -> dict[str, Any]:
    """Everything that changes the numbers (a resumed run must match it exactly)."""
    keys = (
        "split",
        "batch_size",
        "max_samples",
        "repeats",
        "trace",
        "probes",
        "method",
        "rtol",
        "atol",
        "eps",
        "dtype",
        "seed",
        "use_ema",
        "use_labels",
    )
    plain = OmegaConf.to_container(cfg, resolve=True)
    s = {k: plain[k] for k in keys}
    s["data"] = OmegaConf.to_container(cfg.data, resolve=True) if cfg.data else {}
    s["checkpoint"] = str(Path(checkpoint).resolve())
    s["step"] = int(step)
    return json.loads(json.dumps(s))


def _load_previous(
    cfg: DictConfig, out_file: Path, settings: dict[str, Any]
) -> list[dict[str, Any]]:
    resume = cfg.resume
    if resume is False or resume is None:
        return []
    src = out_file if resume is True else Path(str(resume))
    if src.is_dir():
        src = src / RESULT_FILE
    if not src.is_file():
        if resume is True:
            return []
        raise LikelihoodCLIError(f"resume={resume}: no {RESULT_FILE} there")
    try:
        prev = json.loads(src.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LikelihoodCLIError(f"cannot resume from {src}: {e}") from e
    if not isinstance(prev, dict) or prev.get("format") != FORMAT:
        raise LikelihoodCLIError(f"cannot resume from {src}: not a {FORMAT} file")
    old = prev.get("settings", {})
    if old != settings:
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        raise LikelihoodCLIError(
            f"{src} was written with different settings ({', '.join(diff)}); use another output dir "
            "(hydra.run.dir=...) or resume=false to start over"
        )
    return list(prev.get("batches", []))


def _summary(batches: list[dict[str, Any]], dim: int, unit: str) -> dict[str, Any]:
    vals = np.array([v for b in batches for v in b["values"]], dtype=np.float64)
    n = int(vals.size)
    out: dict[str, Any] = {"n": n, "unit": unit}
    if n:
        out["mean"] = float(vals.mean())
        out["stderr"] = float(vals.std(ddof=1) / math.sqrt(n)) if n > 1 else None
        out["mean_nfe"] = float(np.mean([b["nfe"] for b in batches]))
        if unit == "nats":
            out["mean_per_dim"] = out["mean"] / dim
    return out


def _fetch(ds, idx: list[int]):
    if hasattr(ds, "get_batch"):
        return ds.get_batch(torch.as_tensor(idx, dtype=torch.long))
    items = [ds[i] for i in idx]
    x = torch.stack([torch.as_tensor(it[0]) for it in items])
    y = torch.stack([torch.as_tensor(it[1]) for it in items]) if len(items[0]) > 1 else None
    return x, y


# ------------------------------------------------------------------------------------ the run
def evaluate(
    cfg: DictConfig, output_dir: Path, log: Callable[[dict[str, Any], int], None] | None = None
) -> dict[str, Any]:
    """Run the evaluation described by ``cfg`` into ``output_dir``; returns the written record."""
    from scoresde.io.checkpoint import CheckpointError
    from scoresde.io.runs import build_dataset, load_run

    _check_options(cfg)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    device = torch.device(cfg.device)
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
    if cfg.use_labels and not (OmegaConf.select(run.cfg, "model.conditional") or False):
        raise LikelihoodCLIError(
            "use_labels=true needs a conditional model (model.conditional=true)"
        )

    n_total = len(ds) if cfg.max_samples is None else min(len(ds), int(cfg.max_samples))
    n_batches = math.ceil(n_total / cfg.batch_size)
    out_file = Path(output_dir) / RESULT_FILE
    settings = _settings(cfg, run.checkpoint, run.step)
    batches = [b for b in _load_previous(cfg, out_file, settings) if b["index"] < n_batches]
    done = {b["index"] for b in batches}
    record: dict[str, Any] = {
        "format": FORMAT,
        "settings": settings,
        "unit": unit,
        "dim": dim,
        "shape": list(shape),
        "levels": levels,
        "data_range": list(data_range) if levels else None,
        "n_total": n_total,
        "n_batches": n_batches,
        "device": str(device),
        "versions": _versions(),
        "batches": batches,
    }

    from tqdm.auto import tqdm

    todo = [b for b in range(n_batches) if b not in done]
    if cfg.max_batches is not None:
        todo = todo[: int(cfg.max_batches)]
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
            x, y = _fetch(ds, idx)
            if tuple(x.shape[1:]) != shape:
                raise LikelihoodCLIError(
                    f"data shape {tuple(x.shape[1:])} does not match the model's {shape}"
                )
            x = x.to(device=device, dtype=dtype)
            gen = torch.Generator(device=device).manual_seed(_batch_seed(cfg.seed, b))
            reps = cfg.repeats if levels else 1
            y_rep = y.to(device).repeat(reps) if (cfg.use_labels and y is not None) else None
            score_fn = model if y_rep is None else (lambda xx, tt, _y=y_rep: model(xx, tt, _y))
            opts = {
                "trace": cfg.trace,
                "method": cfg.method,
                "rtol": float(cfg.rtol),
                "atol": float(cfg.atol),
                "eps": float(cfg.eps),
                "probes": int(cfg.probes),
            }
            t0 = time.perf_counter()
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
            batches.append(
                {
                    "index": b,
                    "start": idx[0],
                    "n": len(idx),
                    "values": values,
                    "nfe": int(nfe),
                    "seconds": time.perf_counter() - t0,
                }
            )
            batches.sort(key=lambda r: r["index"])
            record["result"] = _summary(batches, dim, unit)
            record["complete"] = len(batches) == n_batches
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
    record["result"] = _summary(batches, dim, unit)
    record["complete"] = len(batches) == n_batches
    write_json_atomic(out_file, record)
    return record


def _report(record: dict[str, Any], out_file: Path) -> str:
    r = record["result"]
    if not r["n"]:
        return f"no samples evaluated; results in {out_file}"
    se = "n/a" if r.get("stderr") is None else f"{r['stderr']:.4f}"
    if r["unit"] == "bits/dim":
        head = f"bits/dim: {r['mean']:.4f} +- {se}"
    else:
        head = f"NLL: {r['mean']:.4f} +- {se} nats ({r['mean_per_dim']:.4f} nats/dim)"
    line = f"{head}  (n={r['n']}, mean NFE {r['mean_nfe']:.1f})"
    if not record["complete"]:
        done = len(record["batches"])
        line += (
            f"\nincomplete: {done}/{record['n_batches']} batches; rerun with the same settings and "
            f"hydra.run.dir={out_file.parent} to resume"
        )
    return line + f"\nresults: {out_file}"


@hydra.main(version_base="1.3", config_path="pkg://scoresde.conf", config_name="likelihood")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the mean (bits/dim or nats) for sweepers."""
    from scoresde.io.loggers import make_logger

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    logger = None
    code = 0
    try:
        logger = make_logger(cfg.logger, cfg, output_dir, name="likelihood")
        record = evaluate(cfg, output_dir, log=logger.log)
        print(_report(record, output_dir / RESULT_FILE))
        r = record["result"]
        if r["n"]:
            logger.log(
                {
                    "likelihood/mean": r["mean"],
                    "likelihood/stderr": r.get("stderr") or 0.0,
                    "likelihood/mean_nfe": r["mean_nfe"],
                },
                len(record["batches"]),
            )
        return r.get("mean")
    except (LikelihoodCLIError, ValueError) as e:
        code = 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(code)
    finally:
        if logger is not None:
            logger.finish(exit_code=code)


if __name__ == "__main__":
    main()
