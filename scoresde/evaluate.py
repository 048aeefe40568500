"""``python -m scoresde.evaluate``: sample-quality metrics over seed-pinned sample sets.

For a trained run (``ckpt=RUN_DIR``) it draws ``num_samples`` samples per seed in ``seeds`` with
``scoresde.sampling.sample`` (the run's sampler config, overridable); for ``samples=FILE.npz``
it takes a seeded random subset per seed. Each set is compared with the reference data (the
run's / ``data=...`` split, or ``reference=FILE.npz``):

- vector data: sliced Wasserstein (``sw``), unbiased RBF MMD^2 (``mmd``), energy distance;
- images: Frechet distance (``fd``), KID (``kid``), precision/recall (``pr``) in the features of
  a small classifier (``features=digits|fashion``) or Inception-v3 (torch-fidelity, optional).

The summary gives mean, std (ddof=1) and min over the seed sets, as EDM (Karras et al. 2022)
reports FID. ``evaluate.json`` is written atomically to the Hydra output dir. The library part
is :func:`run_evaluation` (no Hydra); :func:`main` is the CLI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scoresde import metrics as M
from scoresde.io import atomic

__all__ = [
    "IMAGE_METRICS",
    "METRICS",
    "VECTOR_METRICS",
    "compute_metrics",
    "load_samples_npz",
    "run_evaluation",
    "summarize",
    "write_json_atomic",
]

VECTOR_METRICS = ("sw", "mmd", "energy")
IMAGE_METRICS = ("fd", "kid", "pr")
METRICS = (*VECTOR_METRICS, *IMAGE_METRICS, "fidelity")


# ---------------------------------------------------------------------------- helpers
def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """``json.dump`` to a temp file in the same directory, then ``os.replace``."""
    return atomic.write_json_atomic(path, obj, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.generic,)):
        return o.item()
    if isinstance(o, (Path,)):
        return str(o)
    if isinstance(o, (np.ndarray, Tensor)):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def load_samples_npz(path: str | Path) -> Tensor:
    """Samples from an .npz (key ``x`` or ``samples``) as float32 ``[N, D]`` or ``[N, C, H, W]``
    (``[N, H, W]`` gets a channel axis)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"samples file not found: {path}")
    with np.load(path) as z:
        key = "x" if "x" in z.files else "samples" if "samples" in z.files else None
        if key is None:
            raise ValueError(f"{path}: expected an array named 'x' or 'samples', found {z.files}")
        x = torch.from_numpy(np.asarray(z[key], dtype=np.float32))
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() not in (2, 4):
        raise ValueError(
            f"{path}: samples must be [N, D], [N, H, W] or [N, C, H, W], got {tuple(x.shape)}"
        )
    return x


def _dataset_tensor(ds: Any, n: int | None = None) -> Tensor:
    """All (or the first n) x of a data set of (x, y) items, vectorised when it has get_batch."""
    total = len(ds) if n is None else min(int(n), len(ds))
    if hasattr(ds, "get_batch"):
        return ds.get_batch(torch.arange(total))[0]
    return torch.stack([ds[i][0] for i in range(total)])


def _to_unit_range(x: Tensor, lo: float, hi: float) -> Tensor:
    """Map images from the data range [lo, hi] to [-1, 1] (the feature nets' input range)."""
    if (lo, hi) == (-1.0, 1.0):
        return x
    return (x - lo) / (hi - lo) * 2.0 - 1.0


def _resolve_metrics(metrics: str | Sequence[str], kind: str) -> list[str]:
    if metrics == "auto" or metrics is None:
        return list(VECTOR_METRICS if kind == "vector" else IMAGE_METRICS)
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise ValueError(f"metrics must be 'auto' or a list from {list(METRICS)}, got {names}")
    return names


def _resolve_features(features: str, kind: str, shape: Sequence[int], data_name: str | None) -> str:
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


# ---------------------------------------------------------------------------- metrics
def compute_metrics(
    fake: Tensor,
    real: Tensor,
    metrics: Sequence[str],
    *,
    extractor: Callable[[Tensor], Tensor] | None = None,
    real_features: Tensor | None = None,
    real_stats: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    inception_weights: str | None = None,
) -> dict[str, float]:
    """Metrics of one sample set ``fake`` against ``real`` (both in model range).

    Vector metrics (sw, mmd, energy) use the flattened samples; feature metrics (fd, kid, pr) use
    ``extractor(x) -> [N, F]`` (default: flatten). Randomised metrics draw from a generator seeded
    with ``seed``. Returns ``{name: value}`` (kid -> kid, kid_std; pr -> precision, recall).
    """
    o = {
        "sw_projections": 256,
        "sw_p": 2,
        "mmd_bandwidth": None,
        "kid_subsets": 100,
        "kid_subset_size": 1000,
        "pr_k": 3,
        **dict(options or {}),
    }
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
        from scoresde.features import inception_metrics

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


# ---------------------------------------------------------------------------- sampling
def _draw(
    run: Any,
    n: int,
    seed: int,
    batch_size: int,
    sampler_opts: Mapping[str, Any],
    device: str,
    progress: bool,
) -> tuple[Tensor, int]:
    """n samples from the run's model with a CPU generator seeded by ``seed``; returns (x, nfe).

    The sampler keys its noise per sample from the generator, so a seed gives the same set for
    any batch_size and device (up to floating point)."""
    from scoresde.sampling import sample

    g = torch.Generator().manual_seed(int(seed))
    shape = tuple(run.data_info["shape"])
    score_fn = run.model.score_fn(None) if hasattr(run.model, "score_fn") else run.model
    xs, nfe = [], 0
    bar = _tqdm(total=n, desc=f"sampling seed {seed}", disable=not progress, leave=False)
    for i in range(0, n, batch_size):
        b = min(batch_size, n - i)
        opts = {**dict(sampler_opts), "generator": g, "device": device}
        with torch.no_grad():
            res = sample(run.sde, score_fn, (b, *shape), **opts)
        xs.append(res.x.detach().float().cpu())
        nfe += int(res.nfe)
        bar.update(b)
    bar.close()
    return torch.cat(xs), nfe


def _tqdm(**kw):
    from tqdm.auto import tqdm

    return tqdm(**kw)


def _sampler_options(run_cfg: Any, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's ``cfg.sampler`` with ``override`` merged over it (replaced when the method differs)."""
    from omegaconf import OmegaConf

    base = {}
    if run_cfg is not None and "sampler" in run_cfg and run_cfg.sampler is not None:
        base = OmegaConf.to_container(run_cfg.sampler, resolve=True)
    over = dict(override or {})
    if "method" in over and over["method"] != base.get("method"):
        base = {}
    base.update(over)
    base.pop("progress", None)
    return base


# ---------------------------------------------------------------------------- driver
def run_evaluation(
    *,
    ckpt: str | None = None,
    samples: str | Tensor | None = None,
    reference: str | Tensor | None = None,
    data: Mapping[str, Any] | None = None,
    split: str = "test",
    num_reference: int | None = None,
    num_samples: int | None = 1000,
    seeds: Sequence[int] = (0, 1, 2),
    batch_size: int = 500,
    metrics: str | Sequence[str] = "auto",
    features: str = "auto",
    feature_cache: str | None = None,
    inception_weights: str | None = None,
    options: Mapping[str, Any] | None = None,
    sampler: Mapping[str, Any] | None = None,
    use_ema: bool = True,
    device: str = "cpu",
    progress: bool = False,
    sample_dir: str | Path | None = None,
    clip: bool = True,
) -> dict[str, Any]:
    """Evaluate a run (``ckpt``) or saved ``samples`` against reference data; returns the report
    dict written as evaluate.json (``per_seed`` rows and the ``summary`` over seeds).

    Images are compared in [-1, 1] (mapped from the data range) and, with ``clip``, samples are
    clamped to it. Vector data are compared as they are."""
    if (ckpt is None) == (samples is None):
        raise ValueError(
            "give exactly one of ckpt (a run directory / checkpoint) or samples (an .npz)"
        )
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must list at least one seed")
    t0 = time.perf_counter()
    run, report = None, {}
    if ckpt is not None:
        from scoresde.io.runs import load_run

        run = load_run(ckpt, device=device, use_ema=use_ema)
        report.update(ckpt=str(ckpt), checkpoint=str(run.checkpoint), step=run.step)

    # reference data
    data_name, data_range = None, None
    if run is not None:
        data_range = run.data_info.get("data_range")
    if reference is not None:
        real = load_samples_npz(reference) if isinstance(reference, (str, Path)) else reference
        ref_desc = {"source": str(reference) if isinstance(reference, (str, Path)) else "tensor"}
    else:
        cfg_data = data if data else (run.cfg.data if run is not None else None)
        if not cfg_data:
            raise ValueError(
                "no reference data: pass reference=FILE.npz or data=<name> (or a ckpt)"
            )
        from scoresde.io.runs import build_dataset

        ds = build_dataset(cfg_data, split)
        data_name = str(cfg_data["name"])
        data_range = getattr(ds, "info", {}).get("data_range", data_range)
        real = _dataset_tensor(ds)
        ref_desc = {"source": f"data:{data_name}", "split": split}
    if num_reference is not None:
        real = real[: int(num_reference)]
    real = real.float()
    ref_desc["n"] = int(real.shape[0])
    kind = "vector" if real.dim() == 2 else "image"
    lo, hi = (float(v) for v in (data_range or (-1.0, 1.0)))
    if kind == "image" and (lo, hi) != (-1.0, 1.0):
        if hi <= lo:
            raise ValueError(f"data_range must be increasing, got {[lo, hi]}")
        real = _to_unit_range(real, lo, hi)

    # sample sets
    pool = None
    if samples is not None:
        pool = load_samples_npz(samples) if isinstance(samples, (str, Path)) else samples.float()
        report["samples"] = str(samples) if isinstance(samples, (str, Path)) else "tensor"
        if tuple(pool.shape[1:]) != tuple(real.shape[1:]):
            raise ValueError(
                f"samples have shape {tuple(pool.shape[1:])} per item, reference {tuple(real.shape[1:])}"
            )
    names = _resolve_metrics(metrics, kind)
    feat_name = _resolve_features(features, kind, real.shape[1:], data_name)
    extractor, real_feats, real_stats, feat_info = None, None, None, None
    if any(m in names for m in IMAGE_METRICS):
        from scoresde.features import NetFeatures, make_feature_extractor

        extractor = make_feature_extractor(
            feat_name, cache_dir=feature_cache, device=device, weights_path=inception_weights
        )
        if isinstance(extractor, NetFeatures):
            feat_info = {k: extractor.info.get(k) for k in ("dataset", "test_accuracy", "epochs")}
        real_feats = extractor(real)
        if "fd" in names:
            real_stats = M.feature_statistics(real_feats)

    sampler_opts = _sampler_options(run.cfg, sampler) if run is not None else None
    per_seed, nfes = [], []
    for seed in _tqdm(iterable=seeds, desc="seed sets", disable=not progress):
        if run is not None:
            n = int(num_samples or real.shape[0])
            fake, nfe = _draw(run, n, seed, batch_size, sampler_opts, device, progress)
            nfes.append(nfe)
        else:
            g = torch.Generator().manual_seed(seed)
            n = pool.shape[0] if num_samples is None else min(int(num_samples), pool.shape[0])
            fake = (
                pool[torch.randperm(pool.shape[0], generator=g)[:n]] if n < pool.shape[0] else pool
            )
        if not torch.isfinite(fake).all():
            raise ValueError(f"seed {seed}: samples contain NaN or inf (sampler diverged?)")
        if kind == "image":  # to [-1, 1], clipped as writing 8-bit images would
            fake = _to_unit_range(fake, lo, hi)
            fake = fake.clamp(-1.0, 1.0) if clip else fake
        if sample_dir is not None:
            Path(sample_dir).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(Path(sample_dir) / f"samples_seed{seed}.npz", x=fake.numpy())
        row = compute_metrics(
            fake,
            real,
            names,
            extractor=extractor,
            real_features=real_feats,
            real_stats=real_stats,
            seed=seed,
            options=options,
            inception_weights=inception_weights,
        )
        per_seed.append({"seed": seed, "n": int(fake.shape[0]), **row})
    summary = summarize([{k: v for k, v in r.items() if k != "n"} for r in per_seed])
    report.update(
        kind=kind,
        shape=list(real.shape[1:]),
        reference=ref_desc,
        metrics=names,
        features=feat_name if extractor is not None else None,
        feature_net=feat_info,
        num_samples=per_seed[0]["n"],
        seeds=seeds,
        sampler=sampler_opts,
        clip=clip if kind == "image" else None,
        nfe_per_set=nfes or None,
        per_seed=per_seed,
        summary=summary,
        seconds=time.perf_counter() - t0,
    )
    for r in per_seed:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                report.setdefault("warnings", []).append(f"seed {r['seed']}: {k} is {v}")
    return report


def _format_summary(report: Mapping[str, Any]) -> str:
    lines = [f"{'metric':<12} {'mean':>12} {'std':>12} {'min':>12}"]
    for k, s in report["summary"].items():
        lines.append(f"{k:<12} {s['mean']:>12.5g} {s['std']:>12.4g} {s['min']:>12.5g}")
    return "\n".join(lines)


def main() -> None:
    """Hydra entry point (``conf/evaluate.yaml``)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    @hydra.main(version_base="1.3", config_path="pkg://scoresde.conf", config_name="evaluate")
    def _main(cfg: DictConfig) -> dict:
        if cfg.threads is not None:
            torch.set_num_threads(int(cfg.threads))
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        plain = OmegaConf.to_container(cfg, resolve=True)
        report = run_evaluation(
            ckpt=cfg.ckpt,
            samples=cfg.samples,
            reference=cfg.reference,
            data=plain.get("data"),
            split=cfg.split,
            num_reference=cfg.num_reference,
            num_samples=cfg.num_samples,
            seeds=list(cfg.seeds),
            batch_size=int(cfg.batch_size),
            metrics=plain["metrics"],
            features=cfg.features,
            feature_cache=cfg.feature_cache,
            inception_weights=cfg.inception_weights,
            options=plain["options"],
            sampler=plain.get("sampler") or {},
            use_ema=bool(cfg.use_ema),
            device=str(cfg.device),
            progress=bool(cfg.progress),
            sample_dir=out_dir if cfg.save_samples else None,
            clip=bool(cfg.clip),
        )
        report["config"] = plain
        path = write_json_atomic(out_dir / "evaluate.json", report)
        print(_format_summary(report))
        print(f"wrote {path}")
        from scoresde.io.loggers import make_logger

        logger = make_logger(cfg.logger, cfg, out_dir, name="evaluate")
        try:
            flat = {f"eval/{k}_{s}": v for k, d in report["summary"].items() for s, v in d.items()}
            logger.log(flat, step=int(report.get("step") or 0))
        finally:
            logger.finish()
        return report

    _main()


if __name__ == "__main__":
    main()
