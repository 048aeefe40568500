"""The small offline feature nets behind FD-digits / FD-fashion, and extractors by name.

A feature extractor is any callable ``images [B, C, H, W] (model range [-1, 1]) -> features
[B, F]`` (``scoresde.metrics.FeatureExtractor``). The Frechet distance in the features of a
classifier trained on the dataset itself ("FD-digits", "FD-fashion") is an FID analogue we can
compute offline: Inception-v3 weights are not available on these machines.

- ``FeatureNet``: a small CNN; its penultimate layer (after ReLU) gives the features.
- ``train_feature_net`` / ``load_feature_net``: trains on sklearn digits (8x8, ~10 s on one core)
  or Fashion-MNIST (28x28, Debian's ``dataset-fashion-mnist`` IDX files), cached as a
  ``torch.save`` dict (state_dict + metadata incl. test accuracy) read with ``weights_only=True``.
- ``make_feature_extractor(name)``: "flatten" / "identity", "digits", "fashion", "inception"
  (:mod:`scoresde.evaluation.inception`).

Command line: ``python -m scoresde.features dataset=digits``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from scoresde.data import FASHION_MNIST_DEBIAN_ROOT, get_dataset
from scoresde.evaluation.inception import inception_feature_extractor
from scoresde.io.atomic import save_torch_atomic
from scoresde.metrics import flatten_features
from scoresde.training.loop import Loop

__all__ = [
    "FEATURE_DATASETS",
    "FeatureNet",
    "NetFeatures",
    "check_dataset",
    "default_cache_dir",
    "fashion_mnist_root",
    "feature_net_path",
    "load_feature_dataset",
    "load_feature_file",
    "load_feature_net",
    "make_feature_extractor",
    "save_feature_net",
    "train_feature_net",
]

log = logging.getLogger(__name__)

FEATURE_DATASETS = ("digits", "fashion")
_FORMAT = "scoresde-featurenet-v1"
_DEFAULTS = {  # per dataset: training length and net size (digits: ~99% test accuracy)
    "digits": {"epochs": 10, "batch_size": 32, "width": 32, "feature_dim": 64},
    "fashion": {"epochs": 3, "batch_size": 128, "width": 32, "feature_dim": 128},
}


def check_dataset(dataset: str) -> str:
    if dataset == "fashion_mnist":
        return "fashion"
    if dataset not in FEATURE_DATASETS:
        raise ValueError(f"dataset must be one of {FEATURE_DATASETS}, got {dataset!r}")
    return dataset


# ---------------------------------------------------------------------------- data
def fashion_mnist_root() -> Path | None:
    """Directory with the Fashion-MNIST IDX files ($SCORESDE_FASHION_MNIST or Debian's), or None."""
    for c in (os.environ.get("SCORESDE_FASHION_MNIST", ""), FASHION_MNIST_DEBIAN_ROOT):
        if c and any((Path(c) / f"t10k-images-idx3-ubyte{s}").exists() for s in (".gz", "")):
            return Path(c)
    return None


def load_feature_dataset(dataset: str, split: str = "train") -> tuple[Tensor, Tensor]:
    """Images ``[N, 1, H, W]`` in [-1, 1] and labels ``[N]`` from ``scoresde.data`` (same splits
    as training: digits holds out a fixed 297 images; Fashion-MNIST uses its 10k test set)."""
    dataset = check_dataset(dataset)
    if dataset == "digits":
        ds = get_dataset("digits", split)
    else:
        root = fashion_mnist_root()
        ds = get_dataset("fashion_mnist", split, root=str(root) if root else None)
    return ds.get_batch(torch.arange(len(ds)))


# ---------------------------------------------------------------------------- network
class FeatureNet(nn.Module):
    """Small CNN classifier: 3 conv-BatchNorm-ReLU blocks -> global average pool -> FC(feature_dim)
    -> FC(classes).

    ``features(x)`` returns the penultimate activations ``[B, feature_dim]`` (after ReLU).
    x: [B, in_channels, image_size, image_size] in [-1, 1].
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        num_classes: int = 10,
        width: int = 32,
        feature_dim: int = 64,
    ):
        super().__init__()
        self.config = {
            "in_channels": in_channels,
            "image_size": image_size,
            "num_classes": num_classes,
            "width": width,
            "feature_dim": feature_dim,
        }
        w = width
        pool = nn.MaxPool2d(2) if image_size >= 16 else nn.Identity()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            pool,
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * w, feature_dim), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@torch.no_grad()
def _accuracy(net: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    net.eval()
    dev = next(net.parameters()).device
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        logits = net(x[i : i + batch_size].to(dev))
        correct += int((logits.argmax(1).cpu() == y[i : i + batch_size]).sum())
    return correct / x.shape[0]


def train_feature_net(
    dataset: str = "digits",
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float = 2e-3,
    seed: int = 0,
    width: int | None = None,
    feature_dim: int | None = None,
    device: str = "cpu",
    progress: bool = False,
    max_train: int | None = None,
) -> tuple[FeatureNet, dict]:
    """Train a ``FeatureNet`` classifier; returns ``(net in eval mode, info)``.

    Adam with a cosine learning-rate decay; inputs are dequantized with uniform noise of one
    intensity level (so continuous-valued model samples are in-distribution for the features).
    ``info`` holds dataset, test_accuracy, epochs, train_seconds (wall), train_cpu_seconds,
    num_train, num_test, config.
    """
    dataset = check_dataset(dataset)
    d = _DEFAULTS[dataset]
    epochs = d["epochs"] if epochs is None else int(epochs)
    batch_size = d["batch_size"] if batch_size is None else int(batch_size)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    x_tr, y_tr = load_feature_dataset(dataset, "train")
    x_te, y_te = load_feature_dataset(dataset, "test")
    if max_train is not None:
        x_tr, y_tr = x_tr[:max_train], y_tr[:max_train]
    level = 2.0 / (16 if dataset == "digits" else 255)  # one quantization step in [-1, 1]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = FeatureNet(
        in_channels=x_tr.shape[1],
        image_size=x_tr.shape[-1],
        num_classes=int(y_tr.max()) + 1,
        width=d["width"] if width is None else width,
        feature_dim=d["feature_dim"] if feature_dim is None else feature_dim,
    ).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps_per_epoch = math.ceil(x_tr.shape[0] / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs * steps_per_epoch)
    perm = torch.empty(0, dtype=torch.long)

    def step(k: int) -> None:  # epoch k // steps_per_epoch, its (k mod steps_per_epoch)-th batch
        nonlocal perm
        i = k % steps_per_epoch * batch_size
        if i == 0:  # a new epoch: a fresh permutation (all items, the last batch may be short)
            net.train()
            perm = torch.randperm(x_tr.shape[0], generator=g)
        idx = perm[i : i + batch_size]
        xb = x_tr[idx] + (torch.rand(x_tr[idx].shape, generator=g) - 0.5) * level
        loss = nn.functional.cross_entropy(net(xb.to(device)), y_tr[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loop.postfix(loss=f"{loss.item():.3f}")

    loop = Loop(step, progress=progress, desc=f"feature net ({dataset})")  # the training loop
    t0, c0 = time.perf_counter(), time.process_time()
    loop.run(0, epochs * steps_per_epoch)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    acc = _accuracy(net, x_te, y_te)
    net.eval()
    info = {
        "dataset": dataset,
        "test_accuracy": acc,
        "epochs": epochs,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "num_train": int(x_tr.shape[0]),
        "num_test": int(x_te.shape[0]),
        "seed": seed,
        "data_range": [-1.0, 1.0],
        "config": dict(net.config),
    }
    return net, info


# ---------------------------------------------------------------------------- cache
def default_cache_dir() -> Path:
    """``$SCORESDE_CACHE/features`` if set, else ``~/.cache/scoresde/features``."""
    base = os.environ.get("SCORESDE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "scoresde"
    )
    return Path(base) / "features"


def feature_net_path(dataset: str, cache_dir: str | Path | None = None) -> Path:
    """The cache file ``<cache_dir>/<dataset>.pt`` (cache_dir defaults to ``default_cache_dir()``)."""
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
        f"feature extractor name must be one of flatten, identity, digits, fashion, inception; got {name!r}"
    )
