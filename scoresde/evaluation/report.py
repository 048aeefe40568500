"""``run_evaluation(cfg)``: sample-quality metrics over seed-pinned sample sets.

For a trained run (``ckpt``) it draws ``num_samples`` samples per seed in ``seeds`` through the
shared sample-in-batches loop (:func:`scoresde.generation.sample_in_batches`: per-sample seeds,
sharded over torchrun ranks); for ``samples`` (a samples file or a tensor, model range) it takes
a seeded random subset per seed. Each set is compared with the reference data (the run's /
``data=...`` split, or ``reference``): vector data by sliced Wasserstein, MMD^2 and energy
distance; images by FD, KID and precision / recall in a feature net's features. The summary
gives mean, std (ddof=1) and min over the sets, as EDM (Karras et al. 2022) reports FID.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from scoresde import metrics as M
from scoresde.data.batch import get_batch
from scoresde.evaluation.config import EvaluateConfig
from scoresde.evaluation.feature_cache import NetFeatures, make_feature_extractor
from scoresde.evaluation.metrics_table import (
    IMAGE_METRICS,
    compute_metrics,
    resolve_features,
    resolve_metrics,
    summarize,
)
from scoresde.generation.loop import sample_in_batches
from scoresde.generation.samples_file import load_samples, save_samples
from scoresde.io import distributed
from scoresde.io.distributed import ProcessInfo
from scoresde.io.runs import build_dataset, load_run
from scoresde.sampling import sample
from scoresde.sampling.noise import draw_seeds

__all__ = ["as_evaluate_config", "run_evaluation", "sampler_options"]


def as_evaluate_config(cfg: EvaluateConfig | DictConfig | Mapping[str, Any]) -> EvaluateConfig:
    """An :class:`EvaluateConfig` from itself, a composed Hydra config or keyword values."""
    if isinstance(cfg, EvaluateConfig):
        return cfg
    plain = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
    known = set(EvaluateConfig.__dataclass_fields__)
    unknown = sorted(set(plain) - known)
    if unknown:
        raise ValueError(f"evaluate does not use {unknown}; its keys are {sorted(known)}")
    if OmegaConf.is_config(cfg):  # typed by the schema already; to_object builds the dataclass
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(EvaluateConfig), plain))
    return EvaluateConfig(**plain)


def _check(cfg: EvaluateConfig) -> list[int]:
    """Every size and choice up front, naming the key."""
    if (cfg.ckpt is None) == (cfg.samples is None):
        raise ValueError(
            "give exactly one of ckpt (a run directory / checkpoint) or samples (an .npz)"
        )
    if cfg.split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {cfg.split!r}")
    for key in ("num_samples", "num_reference"):
        v = getattr(cfg, key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{key} must be null (all) or an integer >= 1, got {v!r}")
    b = cfg.batch_size
    if isinstance(b, bool) or not isinstance(b, int) or b < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {b!r}")
    seeds = list(cfg.seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise ValueError(f"seeds must list at least one integer >= 0, got {seeds}")
    return seeds


def sampler_options(run_cfg: Any, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """The run's ``cfg.sampler`` with ``override`` merged over it.

    When the method differs, ``override`` replaces the run's options instead.
    """
    base = {}
    if run_cfg is not None and "sampler" in run_cfg and run_cfg.sampler is not None:
        base = OmegaConf.to_container(run_cfg.sampler, resolve=True)
    over = dict(override or {})
    if "method" in over and over["method"] != base.get("method"):
        base = {}
    base.update(over)
    base.pop("progress", None)
    return base


def _to_unit_range(x: Tensor, lo: float, hi: float) -> Tensor:
    """Images from the data range [lo, hi] to [-1, 1] (the feature nets' input range)."""
    return x if (lo, hi) == (-1.0, 1.0) else (x - lo) / (hi - lo) * 2.0 - 1.0


def _reference(cfg: EvaluateConfig, run) -> tuple[Tensor, dict[str, Any], str | None, Any]:
    data_range = run.data_info.get("data_range") if run is not None else None
    if cfg.reference is not None:
        ref = cfg.reference
        real = load_samples(ref) if isinstance(ref, (str, Path)) else torch.as_tensor(ref)
        return (
            real,
            {"source": str(ref) if isinstance(ref, (str, Path)) else "tensor"},
            None,
            data_range,
        )
    data = cfg.data if cfg.data else (run.cfg.data if run is not None else None)
    if not data:
        raise ValueError("no reference data: pass reference=FILE.npz or data=<name> (or a ckpt)")
    ds = build_dataset(data, cfg.split)
    total = len(ds) if cfg.num_reference is None else min(cfg.num_reference, len(ds))
    real = get_batch(ds, torch.arange(total))[0]
    name = str(data["name"])
    data_range = getattr(ds, "info", {}).get("data_range", data_range)
    return real, {"source": f"data:{name}", "split": cfg.split}, name, data_range


def _draw(
    run, n: int, seed: int, cfg: EvaluateConfig, opts, device, process
) -> tuple[Tensor | None, int]:
    """``n`` samples of the run for seed set ``seed`` (rank 0 gets them; others ``None``)."""
    shape = tuple(run.data_info["shape"])
    score_fn = run.model.score_fn(None)

    def make(idx: Tensor, seeds: Tensor) -> tuple[Tensor, int]:
        with torch.no_grad():
            res = sample(
                run.sde, score_fn, (int(idx.numel()), *shape), seeds=seeds, device=device, **opts
            )
        return res.x, int(res.nfe)

    seeds = draw_seeds(n, torch.Generator().manual_seed(int(seed)))
    drawn = sample_in_batches(
        make, seeds, cfg.batch_size, process=process, progress=cfg.progress, desc=f"seed {seed}"
    )
    return drawn.x, drawn.nfe


def run_evaluation(
    cfg: EvaluateConfig | DictConfig | Mapping[str, Any] | None = None,
    *,
    device: torch.device | str | None = None,
    process: ProcessInfo | None = None,
    sample_dir: str | Path | None = None,
    **values: Any,
) -> dict[str, Any] | None:
    """Evaluate a run or saved samples (see the module doc); returns the report (rank 0) that
    ``python -m scoresde.evaluate`` writes as evaluate.json (``per_seed`` rows, ``summary``).

    Images are compared in [-1, 1] (mapped from the data range) and, with ``clip``, samples are
    clamped to it. Other ranks of a torchrun job draw their share and return ``None``. Without
    ``cfg`` the keyword ``values`` are the :class:`EvaluateConfig` fields
    (``run_evaluation(ckpt=RUN, num_samples=500)``).
    """
    if cfg is not None and values:
        raise TypeError("pass either cfg or keyword values, not both")
    cfg = as_evaluate_config(cfg if cfg is not None else values)
    seeds = _check(cfg)
    process = process or distributed.process_info()
    device = torch.device(device) if device is not None else distributed.resolve_device(cfg.device)
    t0 = time.perf_counter()
    run, report = None, {}
    if cfg.ckpt is not None:
        run = load_run(cfg.ckpt, device=device, use_ema=cfg.use_ema)
        report.update(ckpt=str(cfg.ckpt), checkpoint=str(run.checkpoint), step=run.step)
    real, ref_desc, data_name, data_range = _reference(cfg, run)
    real = real.float()
    ref_desc["n"] = int(real.shape[0])
    kind = "vector" if real.dim() == 2 else "image"
    lo, hi = (float(v) for v in (data_range or (-1.0, 1.0)))
    if kind == "image":
        if hi <= lo:
            raise ValueError(f"data_range must be increasing, got {[lo, hi]}")
        real = _to_unit_range(real, lo, hi)
    pool = None
    if cfg.samples is not None:
        s = cfg.samples
        shape = tuple(real.shape[1:])
        pool = load_samples(s, shape) if isinstance(s, (str, Path)) else torch.as_tensor(s).float()
        report["samples"] = str(s) if isinstance(s, (str, Path)) else "tensor"
        if tuple(pool.shape[1:]) != shape:
            raise ValueError(
                f"samples have shape {list(pool.shape[1:])} per item, reference {list(shape)}"
            )
    names = resolve_metrics(cfg.metrics, kind)
    feat_name = resolve_features(cfg.features, kind, real.shape[1:], data_name)
    extractor, real_feats, real_stats, feat_info = None, None, None, None
    if any(m in names for m in IMAGE_METRICS) and process.is_main:
        extractor = make_feature_extractor(
            feat_name,
            cache_dir=cfg.feature_cache,
            device=device,
            weights_path=cfg.inception_weights,
        )
        if isinstance(extractor, NetFeatures):
            feat_info = {k: extractor.info.get(k) for k in ("dataset", "test_accuracy", "epochs")}
        real_feats = extractor(real)
        if "fd" in names:
            real_stats = M.feature_statistics(real_feats)
    opts = sampler_options(run.cfg, cfg.sampler) if run is not None else None
    per_seed, nfes = [], []
    for seed in seeds:
        if run is not None:
            n = cfg.num_samples or int(real.shape[0])
            fake, nfe = _draw(run, n, seed, cfg, opts, device, process)
            nfes.append(nfe)
            if fake is None:
                continue
        else:
            g = torch.Generator().manual_seed(seed)
            n = pool.shape[0] if cfg.num_samples is None else min(cfg.num_samples, pool.shape[0])
            fake = (
                pool[torch.randperm(pool.shape[0], generator=g)[:n]] if n < pool.shape[0] else pool
            )
        if not torch.isfinite(fake).all():
            raise ValueError(f"seed {seed}: samples contain NaN or inf (sampler diverged?)")
        if sample_dir is not None and run is not None:
            save_samples(Path(sample_dir) / f"samples_seed{seed}.npz", fake, run.data_info)
        if kind == "image":  # to [-1, 1], clipped as writing 8-bit images would
            fake = _to_unit_range(fake, lo, hi)
            fake = fake.clamp(-1.0, 1.0) if cfg.clip else fake
        row = compute_metrics(
            fake,
            real,
            names,
            extractor=extractor,
            real_features=real_feats,
            real_stats=real_stats,
            seed=seed,
            options=cfg.options,
            inception_weights=cfg.inception_weights,
        )
        per_seed.append({"seed": seed, "n": int(fake.shape[0]), **row})
    if not process.is_main:
        return None
    report.update(
        kind=kind,
        shape=list(real.shape[1:]),
        reference=ref_desc,
        metrics=names,
        features=feat_name if extractor is not None else None,
        feature_net=feat_info,
        num_samples=per_seed[0]["n"],
        seeds=seeds,
        sampler=opts,
        clip=cfg.clip if kind == "image" else None,
        processes=process.world,
        nfe_per_set=nfes or None,
        per_seed=per_seed,
        summary=summarize([{k: v for k, v in r.items() if k != "n"} for r in per_seed]),
        seconds=time.perf_counter() - t0,
    )
    for r in per_seed:
        for k, v in r.items():
            if isinstance(v, float) and not math.isfinite(v):
                report.setdefault("warnings", []).append(f"seed {r['seed']}: {k} is {v}")
    return report
