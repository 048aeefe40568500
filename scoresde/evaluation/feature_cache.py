"""The feature-net cache (``<cache_dir>/<dataset>.pt``) and feature extractors by name.

``make_feature_extractor(name)``: "flatten" / "identity" (raw values), "digits", "fashion" (the
cached :class:`~scoresde.evaluation.feature_net.FeatureNet`, trained on first use), "inception"
(:mod:`scoresde.evaluation.inception`). Cache files are ``torch.save`` dicts (state_dict + info,
with the test accuracy) written atomically and read with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from scoresde.evaluation.feature_net import (
    FEATURE_DATASETS,
    FeatureNet,
    check_dataset,
    train_feature_net,
)
from scoresde.evaluation.inception import inception_feature_extractor
from scoresde.io.atomic import save_torch_atomic
from scoresde.metrics import flatten_features

__all__ = [
    "NetFeatures",
    "default_cache_dir",
    "feature_net_path",
    "load_feature_file",
    "load_feature_net",
    "make_feature_extractor",
    "save_feature_net",
]

log = logging.getLogger(__name__)

_FORMAT = "scoresde-featurenet-v1"


def default_cache_dir() -> Path:
    """``$SCORESDE_CACHE/features`` if set, else ``~/.cache/scoresde/features``."""
    base = os.environ.get("SCORESDE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "scoresde"
    )
    return Path(base) / "features"


def feature_net_path(dataset: str, cache_dir: str | Path | None = None) -> Path:
    """The cache file ``<cache_dir>/<dataset>.pt``.

    ``cache_dir`` defaults to ``default_cache_dir()``.
    """
    dataset = check_dataset(dataset)
    return (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / f"{dataset}.pt"


def save_feature_net(path: str | Path, net: FeatureNet, info: dict) -> Path:
    """Write ``{"format", "state_dict", "info"}`` atomically (tmp + os.replace)."""
    state = {"format": _FORMAT, "state_dict": net.state_dict(), "info": dict(info)}
    return save_torch_atomic(path, state)


def load_feature_file(path: Path, device: str) -> tuple[FeatureNet, dict]:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # corrupt / truncated / not a torch file
        raise ValueError(f"cannot read feature net {path}: {e}") from e
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a scoresde feature net (expected format {_FORMAT!r})")
    info = state["info"]
    net = FeatureNet(**info["config"]).to(device)
    net.load_state_dict(state["state_dict"])
    return net.eval(), info


def load_feature_net(
    dataset: str,
    cache_dir: str | Path | None = None,
    *,
    train_if_missing: bool = True,
    device: str = "cpu",
    **train_kwargs,
) -> tuple[FeatureNet, dict]:
    """The cached feature net for ``dataset`` (training and caching it first when missing).

    Returns ``(net in eval mode, info)``; ``info["test_accuracy"]`` is the held-out accuracy.
    """
    path = feature_net_path(dataset, cache_dir)
    if path.exists():
        return load_feature_file(path, device)
    if not train_if_missing:
        raise FileNotFoundError(
            f"no feature net at {path}: run `python -m scoresde.features dataset={dataset}`"
        )
    log.info(
        "no cached %s feature net at %s: training one (python -m scoresde.features)", dataset, path
    )
    net, info = train_feature_net(dataset, device=device, **train_kwargs)
    save_feature_net(path, net, info)
    log.info("feature net %s: test accuracy %.4f", path, info["test_accuracy"])
    return net, info


# ---------------------------------------------------------------------------- extractors
class NetFeatures:
    """Wrap a ``FeatureNet`` as a batched, no-grad ``images -> features`` callable."""

    def __init__(self, net: FeatureNet, info: dict | None = None, batch_size: int = 500):
        self.net = net.eval()
        self.info = info or {}
        self.batch_size = batch_size
        c = net.config
        self.input_shape = (c["in_channels"], c["image_size"], c["image_size"])

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"images must have shape [B, {', '.join(map(str, self.input_shape))}] for this "
                f"feature net, got {tuple(x.shape)}"
            )
        dev = next(self.net.parameters()).device
        out = [
            self.net.features(x[i : i + self.batch_size].to(dev, torch.float32)).cpu()
            for i in range(0, x.shape[0], self.batch_size)
        ]
        return torch.cat(out)


def make_feature_extractor(
    name: str,
    *,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    train_if_missing: bool = True,
    weights_path: str | None = None,
) -> Callable[[Tensor], Tensor]:
    """A feature extractor by name: "flatten"/"identity" (vectors, pixels), "digits", "fashion"
    (cached ``FeatureNet``; trained on first use unless ``train_if_missing=False``), "inception"
    (torch-fidelity's Inception-v3 pool features, 2048-D)."""
    if name in ("flatten", "identity"):
        return flatten_features
    if name in (*FEATURE_DATASETS, "fashion_mnist"):
        net, info = load_feature_net(
            name, cache_dir, train_if_missing=train_if_missing, device=device
        )
        return NetFeatures(net, info)
    if name == "inception":
        return inception_feature_extractor(weights_path=weights_path, device=device)
    raise ValueError(
        "feature extractor name must be one of flatten, identity, digits, fashion, inception; "
        f"got {name!r}"
    )
