"""The ``likelihood.json`` record of :mod:`scoresde.evaluation.likelihood`.

The settings that fix the numbers (a resume must match them exactly, or it is refused listing
the differing keys), the per-batch seeds, the summary and the printed report."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from scoresde.io import distributed
from scoresde.likelihood.ode_likelihood import default_method

__all__ = [
    "FORMAT",
    "RESULT_FILE",
    "LikelihoodCLIError",
    "batch_seed",
    "load_previous",
    "report",
    "settings",
    "summary",
]

FORMAT = "scoresde-likelihood-v1"
RESULT_FILE = "likelihood.json"


class LikelihoodCLIError(ValueError):
    """A user-facing error of the command line (bad option, unusable checkpoint or data)."""


# ------------------------------------------------------------------------------------ helpers


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for pkg in ("scoresde", "torchdiffeq"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "unknown"
    return out


def batch_seed(seed: int, index: int) -> int:
    return int(
        np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0] >> 1
    )


def settings(cfg: DictConfig, checkpoint: Path, step: int) -> dict[str, Any]:
    """Everything that changes the numbers (a resumed run must match it exactly)."""
    keys = (
        "split",
        "batch_size",
        "max_samples",
        "repeats",
        "trace",
        "probes",
        "nodes",
        "method",
        "rtol",
        "atol",
        "eps",
        "dtype",
        "seed",
        "use_ema",
        "use_labels",
        "bound",
        "bound_samples",
    )
    plain = OmegaConf.to_container(cfg, resolve=True)
    s = {k: plain[k] for k in keys}
    if s["method"] is None:  # the solver it resolves to (so a run from before null resumes)
        s["method"] = default_method(s["trace"], distributed.resolve_device(cfg.device))
    s["data"] = OmegaConf.to_container(cfg.data, resolve=True) if cfg.data else {}
    s["checkpoint"] = str(Path(checkpoint).resolve())
    s["step"] = int(step)
    return json.loads(json.dumps(s))


def load_previous(
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
            f"{src} was written with different settings ({', '.join(diff)}); "
            "use another output dir (hydra.run.dir=...) or resume=false to start over"
        )
    return list(prev.get("batches", []))


def summary(batches: list[dict[str, Any]], dim: int, unit: str) -> dict[str, Any]:
    vals = np.array([v for b in batches for v in b["values"]], dtype=np.float64)
    n = int(vals.size)
    out: dict[str, Any] = {"n": n, "unit": unit}
    if n:
        out["mean"] = float(vals.mean())
        out["stderr"] = float(vals.std(ddof=1) / math.sqrt(n)) if n > 1 else None
        out["mean_nfe"] = float(np.mean([b["nfe"] for b in batches]))
        if unit == "nats":
            out["mean_per_dim"] = out["mean"] / dim
        if n and "bound_values" in batches[0]:
            bv = np.array([v for b in batches for v in b["bound_values"]], dtype=np.float64)
            bse = np.array([v for b in batches for v in b["bound_stderr"]], dtype=np.float64)
            out["bound"] = {
                "mean": float(bv.mean()),
                "stderr": float(bv.std(ddof=1) / math.sqrt(n)) if n > 1 else None,
                "monte_carlo_stderr": float(math.sqrt((bse**2).sum()) / n),
            }
    return out


def report(record: dict[str, Any], out_file: Path) -> str:
    """The command line's summary: the ODE value and, with ``bound``, the bound beside it."""
    r = record["result"]
    if not r["n"]:
        return f"no samples evaluated; results in {out_file}"
    se = "n/a" if r.get("stderr") is None else f"{r['stderr']:.4f}"
    if r["unit"] == "bits/dim":
        head = f"bits/dim: {r['mean']:.4f} +- {se}"
    else:
        head = f"NLL: {r['mean']:.4f} +- {se} nats ({r['mean_per_dim']:.4f} nats/dim)"
    line = f"{head}  (n={r['n']}, mean NFE {r['mean_nfe']:.1f})"
    if "bound" in r:
        rb = r["bound"]
        bse = "n/a" if rb.get("stderr") is None else f"{rb['stderr']:.4f}"
        name = record["settings"]["bound"]
        name = "continuous" if name is True else name
        per_dim = "" if r["unit"] == "bits/dim" else f" ({rb['mean'] / record['dim']:.4f} nats/dim)"
        line += (
            f"\nbound ({name}): {rb['mean']:.4f} +- {bse}{per_dim} (Monte-Carlo part "
            f"+- {rb['monte_carlo_stderr']:.4f}); ODE: {r['mean']:.4f} +- {se}"
        )
    if not record["complete"]:
        done = len(record["batches"])
        line += (
            f"\nincomplete: {done}/{record['n_batches']} batches; rerun with the same settings and "
            f"hydra.run.dir={out_file.parent} to resume"
        )
    return line + f"\nresults: {out_file}"
