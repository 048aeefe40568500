"""Evaluation: sample-quality reports over seed-pinned sample sets, and the feature nets.

``run_evaluation(cfg)`` is the library call behind ``python -m scoresde.evaluate``;
``train_feature_net`` / ``load_feature_net`` the one behind ``python -m scoresde.features``.
"""

from scoresde.evaluation.config import EvaluateConfig, FeaturesConfig, MetricOptions
from scoresde.evaluation.feature_cache import (
    NetFeatures,
    default_cache_dir,
    feature_net_path,
    load_feature_net,
    make_feature_extractor,
    save_feature_net,
)
from scoresde.evaluation.feature_net import (
    FEATURE_DATASETS,
    FeatureNet,
    fashion_mnist_root,
    load_feature_dataset,
    train_feature_net,
)
from scoresde.evaluation.features_job import build_feature_net
from scoresde.evaluation.inception import inception_feature_extractor, inception_metrics
from scoresde.evaluation.metrics_table import (
    IMAGE_METRICS,
    METRICS,
    VECTOR_METRICS,
    compute_metrics,
    summarize,
)
from scoresde.evaluation.report import as_evaluate_config, run_evaluation, sampler_options

__all__ = [
    "FEATURE_DATASETS",
    "IMAGE_METRICS",
    "METRICS",
    "VECTOR_METRICS",
    "EvaluateConfig",
    "FeatureNet",
    "FeaturesConfig",
    "MetricOptions",
    "NetFeatures",
    "as_evaluate_config",
    "build_feature_net",
    "compute_metrics",
    "default_cache_dir",
    "fashion_mnist_root",
    "feature_net_path",
    "inception_feature_extractor",
    "inception_metrics",
    "load_feature_dataset",
    "load_feature_net",
    "make_feature_extractor",
    "run_evaluation",
    "sampler_options",
    "save_feature_net",
    "summarize",
    "train_feature_net",
]
