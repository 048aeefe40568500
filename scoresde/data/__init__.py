"""Data sets for training and evaluation: 2-D toy sets and images, all in memory.

``get_dataset(name, split, **options)`` returns a ``torch.utils.data.Dataset`` of ``(x, y)`` in
model range with an ``.info`` dict: ``name``, ``kind`` ("vector"|"image"), ``shape``, ``levels``
(discrete levels for bits/dim; None for continuous toy data), ``data_range``, ``num_classes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scoresde.checks import check_positive, check_size
from scoresde.data.batch import dataset_size, get_batch
from scoresde.data.images import (
    FASHION_MNIST_DEBIAN_ROOT,
    DataError,
    ImageDataset,
    load_cifar10_dataset,
    load_digits_dataset,
    load_idx_dataset,
    load_image_folder_dataset,
    read_cifar10_batch,
    read_idx,
    write_idx,
)
from scoresde.data.toy2d import TOY2D, Toy2D, make_toy2d

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DEBIAN_ROOT",
    "TOY2D",
    "DataError",
    "ImageDataset",
    "Toy2D",
    "dataset_size",
    "get_batch",
    "get_dataset",
    "make_toy2d",
    "read_cifar10_batch",
    "read_idx",
    "write_idx",
]

IMAGE_DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "image_folder")
DATASETS = tuple(sorted(TOY2D)) + IMAGE_DATASETS


def get_dataset(name: str, split: str = "train", **options: Any):
    """Build data set ``name`` (one of :data:`DATASETS`) for ``split`` ("train"|"test").

    Options (unused ones are ignored): ``root`` (image files), ``data_range`` ([-1, 1] or [0, 1]),
    ``random_flip`` (train split only), ``n``/``n_test``/``seed``/``scale`` (toy sets),
    ``image_size``, ``channels`` and ``n_test`` (image folders). Sizes are checked for both splits
    (a zero or negative ``n``, ``n_test`` or ``image_size`` is a ``ValueError`` naming it).
    """
    if name not in DATASETS:
        raise ValueError(f"data.name must be one of {list(DATASETS)}, got {name!r}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    o = dict(options)
    data_range = tuple(o.get("data_range") or (-1.0, 1.0))
    flip = bool(o.get("random_flip", False)) and split == "train"
    if name in TOY2D:
        n = check_size("data.n", o.get("n", 10000))
        n_test = check_size("data.n_test", o.get("n_test", 2000))
        seed = check_size("data.seed", o.get("seed", 0), minimum=0)
        scale = check_positive("data.scale", o.get("scale", 1.0))
        return Toy2D(name, n=n if split == "train" else n_test, seed=seed, split=split, scale=scale)
    if name == "digits":
        return load_digits_dataset(split, data_range=data_range, random_flip=flip)
    if name in ("mnist", "fashion_mnist"):
        root = o.get("root") or (
            FASHION_MNIST_DEBIAN_ROOT if name == "fashion_mnist" else "data/mnist"
        )
        return load_idx_dataset(root, split, name=name, data_range=data_range, random_flip=flip)
    if name == "cifar10":
        return load_cifar10_dataset(
            o.get("root") or "data/cifar10", split, data_range=data_range, random_flip=flip
        )
    channels = o.get("channels", 3)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"data.channels must be 1 or 3, got {channels!r}")
    return load_image_folder_dataset(
        o.get("root") or "data/images",
        split,
        image_size=check_size("data.image_size", o.get("image_size", 32)),
        channels=channels,
        data_range=data_range,
        n_test=check_size("data.n_test", o.get("n_test", 0), minimum=0),
        random_flip=flip,
    )


def dataset_from_config(cfg_data: Mapping[str, Any], split: str = "train"):
    """``get_dataset(**cfg.data)`` for a config group ``data/`` node (a mapping with ``name``)."""
    opts = {k: v for k, v in dict(cfg_data).items() if k != "name"}
    if "name" not in cfg_data:
        raise ValueError("data config needs a 'name' key")
    return get_dataset(cfg_data["name"], split, **opts)
