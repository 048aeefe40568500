"""The small offline feature nets behind FD-digits / FD-fashion, and extractors by name.

A feature extractor is any callable ``images [B, C, H, W] (model range [-1, 1]) -> features
[B, F]`` (``scoresde.metrics.FeatureExtractor``). The Frechet distance in the features of a
classifier trained on the dataset itself ("FD-digits", "FD-fashion") is an FID analogue we can
compute offline: Inception-v3 weights are not available on these machines.

- ``FeatureNet``: a small CNN; its penultimate layer (after ReLU) gives the features.
- ``train_feature_net`` / ``load_feature_net``: trains on sklearn digits (8x8, ~10 s on one core)
  or Fashion-MNIST (28x28, Debian's ``dataset-fashion-mnist`` IDX files), cached as a
  ``torch.save`` dict (state_dict + metadata incl. test accuracy) read with ``weights_only=True``.
- the cache and ``make_feature_extractor(name)``: :mod:`scoresde.evaluation.feature_cache`.

Command line: ``python -m scoresde.features dataset=digits``.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from scoresde.data import FASHION_MNIST_DEBIAN_ROOT, get_dataset
from scoresde.training.loop import Loop

__all__ = [
    "FEATURE_DATASETS",
    "FeatureNet",
    "check_dataset",
    "fashion_mnist_root",
    "load_feature_dataset",
    "train_feature_net",
]


FEATURE_DATASETS = ("digits", "fashion")
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
