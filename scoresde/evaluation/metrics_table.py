"""The metric set of one sample set, and the summary over seed-pinned sets.

The summary reports EDM's mean / std / min.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, is_dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scoresde import metrics as M
from scoresde.evaluation.config import MetricOptions
from scoresde.evaluation.inception import inception_metrics

__all__ = [
    "IMAGE_METRICS",
    "METRICS",
    "VECTOR_METRICS",
    "compute_metrics",
    "resolve_features",
    "resolve_metrics",
    "summarize",
]

VECTOR_METRICS = ("sw", "mmd", "energy")
IMAGE_METRICS = ("fd", "kid", "pr")
METRICS = (*VECTOR_METRICS, *IMAGE_METRICS, "fidelity")


def resolve_metrics(metrics: str | Sequence[str] | None, kind: str) -> list[str]:
    """``metrics=auto`` -> the kind's defaults; a list is checked against :data:`METRICS`."""
    if metrics == "auto" or metrics is None:
        return list(VECTOR_METRICS if kind == "vector" else IMAGE_METRICS)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ValueError(f"metrics must be 'auto' or a list from {list(METRICS)}, got {names}")
    return names


def resolve_features(features: str, kind: str, shape: Sequence[int], data_name: str | None) -> str:
    """``features=auto`` -> flatten (vectors), digits (8x8), fashion (28x28)."""
    if features != "auto":
        return features
    if kind == "vector":
        return "flatten"
    if data_name in ("digits",) or tuple(shape) == (1, 8, 8):
        return "digits"
    if data_name in ("fashion_mnist", "fashion") or tuple(shape) == (1, 28, 28):
        return "fashion"
    raise ValueError(
        f"features=auto has no offline feature net for images of shape {tuple(shape)}: "
        "pass features=flatten (raw pixels) or features=inception (pip install scoresde[fid])"
    )


def _options(options: Any) -> dict[str, Any]:
    base = asdict(MetricOptions())
    if is_dataclass(options):
        return {**base, **asdict(options)}
    given = dict(options or {})
    unknown = sorted(set(given) - set(base))
    if unknown:
        raise ValueError(f"options: unknown keys {unknown}; valid keys are {sorted(base)}")
    return {**base, **given}


def compute_metrics(
    fake: Tensor,
    real: Tensor,
    metrics: Sequence[str],
    *,
    extractor: Callable[[Tensor], Tensor] | None = None,
    real_features: Tensor | None = None,
    real_stats: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    options: MetricOptions | Mapping[str, Any] | None = None,
    inception_weights: str | None = None,
) -> dict[str, float]:
    """Metrics of one sample set ``fake`` against ``real`` (both in model range).

    Vector metrics (sw, mmd, energy) use the flattened samples; feature metrics (fd, kid, pr) use
    ``extractor(x) -> [N, F]`` (default: flatten). Randomised metrics draw from a generator seeded
    with ``seed``. Returns ``{name: value}`` (kid -> kid, kid_std; pr -> precision, recall).
    """
    o = _options(options)
    g = torch.Generator().manual_seed(int(seed))
    out: dict[str, float] = {}
    xf, xr = fake.reshape(fake.shape[0], -1), real.reshape(real.shape[0], -1)
    if "sw" in metrics:
        out["sw"] = M.sliced_wasserstein(
            xf, xr, n_projections=int(o["sw_projections"]), p=float(o["sw_p"]), generator=g
        )
    if "mmd" in metrics:
        out["mmd"] = M.mmd2(xf, xr, bandwidth=o["mmd_bandwidth"])
    if "energy" in metrics:
        out["energy"] = M.energy_distance(xf, xr)
    if any(m in metrics for m in IMAGE_METRICS):
        extractor = extractor or M.flatten_features
        ff = extractor(fake)
        fr = real_features if real_features is not None else extractor(real)
        if "fd" in metrics:
            mu_r, s_r = real_stats if real_stats is not None else M.feature_statistics(fr)
            mu_f, s_f = M.feature_statistics(ff)
            out["fd"] = M.frechet_distance(mu_f, s_f, mu_r, s_r)
        if "kid" in metrics:
            out["kid"], out["kid_std"] = M.kid(
                ff,
                fr,
                num_subsets=int(o["kid_subsets"]),
                subset_size=int(o["kid_subset_size"]),
                generator=g,
            )
        if "pr" in metrics:
            out["precision"], out["recall"] = M.precision_recall(fr, ff, k=int(o["pr_k"]))
    if "fidelity" in metrics:
        res = inception_metrics(fake, real, weights_path=inception_weights)
        out.update({f"inception_{k}": v for k, v in res.items()})
    return out


def summarize(per_seed: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``{metric: {mean, std (ddof=1; 0 for one set), min, max}}`` over the seed sets."""
    keys = [k for k in per_seed[0] if k != "seed"]
    out = {}
    for k in keys:
        v = np.array([float(r[k]) for r in per_seed], dtype=np.float64)
        out[k] = {
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()),
            "max": float(v.max()),
        }
    return out
