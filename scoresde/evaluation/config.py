"""Typed configuration of ``python -m scoresde.evaluate`` and ``python -m scoresde.features``.

The dataclasses hold the defaults and types (Hydra structured configs registered by
:func:`scoresde.cli.configs.register`); :func:`scoresde.evaluation.run_evaluation` takes an
:class:`EvaluateConfig` directly, so the library and the command line share one definition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["EvaluateConfig", "FeaturesConfig", "MetricOptions"]


@dataclass
class MetricOptions:
    sw_projections: int = 256  # sliced Wasserstein directions
    sw_p: int = 2
    mmd_bandwidth: float | None = None  # RBF bandwidth (null: median heuristic)
    kid_subsets: int = 100
    kid_subset_size: int = 1000
    pr_k: int = 3  # k-NN radius for precision / recall


@dataclass
class EvaluateConfig:
    """Sample-quality metrics of a run (``ckpt``) or a samples file against reference data."""

    ckpt: str | None = None  # run directory or checkpoint file: sample from its (EMA) model
    samples: Any = None  # or: a samples .npz (generate's, or arrays samples_model / x), or a tensor
    reference: Any = None  # null: the data set (the run's or data=...); or an .npz / a tensor
    split: str = "test"  # reference split: train | test
    num_reference: int | None = None  # the first N reference points (null: all of the split)
    num_samples: int | None = 1000  # samples per seed set (file input: a subset; null: all)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # one sample set per seed
    batch_size: int = 500  # sampling batch size
    metrics: Any = "auto"  # auto | a list from sw mmd energy fd kid pr fidelity
    features: str = "auto"  # auto | digits | fashion | flatten | inception
    feature_cache: str | None = None  # feature-net cache dir (null: $SCORESDE_CACHE/features)
    inception_weights: str | None = None  # torch-fidelity's Inception weights file
    options: MetricOptions = field(default_factory=MetricOptions)
    data: Any = None  # reference data config when there is no ckpt (data=moons | digits ...)
    sampler: Any = field(default_factory=dict)  # sampler options merged over the run's
    use_ema: bool = True  # sample from the EMA weights
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int | None = 1  # torch intra-op threads (null: torch's default)
    clip: bool = True  # images: clamp samples to the data range (as 8-bit images would)
    save_samples: bool = False  # also write samples_seed<S>.npz to the output dir
    progress: bool = True  # tqdm progress bars
    logger: Any = None


@dataclass
class FeaturesConfig:
    """Train and cache the small classifier behind FD-digits / FD-fashion."""

    dataset: str = "digits"  # digits | fashion
    cache_dir: str | None = None  # null: $SCORESDE_CACHE/features, else ~/.cache/scoresde/features
    force: bool = False  # retrain even when a cached net exists
    epochs: int | None = None  # null: per-dataset default (digits 10, fashion 3)
    batch_size: int | None = None  # null: per-dataset default (digits 32, fashion 128)
    lr: float = 2e-3  # Adam learning rate (cosine decay to 0)
    width: int | None = None  # conv width (null: 32)
    feature_dim: int | None = None  # penultimate (feature) dim (null: digits 64, fashion 128)
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    threads: int | None = 1  # torch intra-op threads (null: torch's default)
    progress: bool = True  # tqdm progress bar
