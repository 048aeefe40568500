"""Image data sets read by our own readers (no torchvision, no download).

Readers of the file formats are in :mod:`scoresde.data.files`.

- ``digits``: scikit-learn's bundled 8x8 digits (values 0..16, 17 levels, 10 classes).
- ``mnist`` / ``fashion_mnist``: IDX files (``train-images-idx3-ubyte[.gz]`` ...), gzip or raw.
- ``cifar10``: the binary batches (``data_batch_1.bin`` .. ``data_batch_5.bin``,
  ``test_batch.bin``), each record 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32).
- ``image_folder``: PNG/JPEG files under ``root`` (sub-folders are classes), resized to
  ``image_size``.

Every data set stores integer pixels ``[N, C, H, W]`` and returns ``(x, y)`` with
``x = v / (levels - 1)`` in [0, 1], mapped to [-1, 1] when ``data_range == (-1, 1)``.

Files that disagree with their own headers or with each other are refused with a
:class:`DataError` naming the file: an IDX file whose size differs from its header's shape, image
and label files of different counts, labels outside 0..9, CIFAR-10 batches that are not whole
records or hold different numbers of records, image folders mixing sizes or Pillow modes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scoresde.checks import check_size
from scoresde.data.files import (
    FASHION_MNIST_DEBIAN_ROOT,
    DataError,
    read_cifar10_batch,
    read_idx,
    write_idx,
)

__all__ = [
    "FASHION_MNIST_DEBIAN_ROOT",
    "DataError",
    "ImageDataset",
    "load_cifar10_dataset",
    "load_digits_dataset",
    "load_idx_dataset",
    "load_image_folder_dataset",
    "read_cifar10_batch",
    "read_idx",
    "write_idx",
]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
# Pillow modes of 8-bit images (other modes, e.g. 16-bit "I;16" or float "F", would be clipped)
_IMAGE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")


# ---------------------------------------------------------------------------------- data set
class ImageDataset(torch.utils.data.Dataset):
    """Integer images ``[N, C, H, W]`` (values 0..levels-1) with labels, served in model range.

    Items: ``(x [C, H, W] float32, y [] int64)``. ``random_flip`` mirrors horizontally at random
    in :meth:`get_batch` when a generator is passed (training augmentation).
    """

    def __init__(
        self,
        images: np.ndarray | Tensor,
        labels: np.ndarray | Tensor | None,
        levels: int,
        data_range: Sequence[float] = (-1.0, 1.0),
        name: str = "images",
        num_classes: int | None = None,
        random_flip: bool = False,
    ):
        data_range = tuple(float(v) for v in data_range)
        if data_range not in ((-1.0, 1.0), (0.0, 1.0)):
            raise ValueError(f"data_range must be [-1, 1] or [0, 1], got {list(data_range)}")
        images = torch.as_tensor(np.asarray(images))
        if images.dim() == 3:
            images = images[:, None]
        if images.dim() != 4:
            raise ValueError(
                f"images must be [N, C, H, W] or [N, H, W], got shape {tuple(images.shape)}"
            )
        self.images = images
        if labels is None:
            labels = torch.zeros(images.shape[0], dtype=torch.long)
        self.labels = torch.as_tensor(np.asarray(labels)).long()
        if self.labels.shape != (images.shape[0],):
            raise ValueError(
                f"labels must have shape [{images.shape[0]}] (one per image), "
                f"got {tuple(self.labels.shape)}"
            )
        self.levels = check_size("levels", levels, minimum=2)
        if images.is_floating_point() or images.dtype == torch.bool:
            raise ValueError(f"images must hold integer pixel levels, got dtype {images.dtype}")
        if images.numel() and (int(images.min()) < 0 or int(images.max()) >= self.levels):
            raise ValueError(
                f"images must hold levels 0..{self.levels - 1}, "
                f"found values {int(images.min())}..{int(images.max())}"
            )
        self.data_range = data_range
        self.random_flip = bool(random_flip)
        if num_classes is None:
            num_classes = int(self.labels.max()) + 1 if len(self.labels) else 1
        self.info = {
            "name": name,
            "kind": "image",
            "shape": list(images.shape[1:]),
            "levels": self.levels,
            "data_range": list(data_range),
            "num_classes": int(num_classes),
        }

    def __len__(self) -> int:
        return self.images.shape[0]

    def to_model_range(self, v: Tensor) -> Tensor:
        """Integer pixels -> float in ``data_range``: v / (levels - 1), then 2 u - 1 for [-1, 1]."""
        u = v.float() / (self.levels - 1)
        return u * 2.0 - 1.0 if self.data_range[0] < 0 else u

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.to_model_range(self.images[i]), self.labels[i]

    def get_batch(
        self, idx: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Vectorised ``(x [B, C, H, W], y [B])``; random flips drawn from ``generator``."""
        x = self.to_model_range(self.images[idx])
        if self.random_flip and generator is not None:
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, self.labels[idx]


# ---------------------------------------------------------------------------------- loaders
def _split_indices(n: int, split: str, n_test: int, seed: int = 0) -> np.ndarray:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:] if split == "train" else perm[:n_test])


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def load_digits_dataset(
    split: str = "train", data_range: Sequence[float] = (-1, 1), n_test: int = 297, **kw
) -> ImageDataset:
    """scikit-learn's 8x8 digits (1797 images, 17 grey levels), ``n_test`` held out at random."""
    _check_split(split)
    from sklearn.datasets import load_digits

    d = load_digits()
    n_test = check_size("n_test", n_test, minimum=1 if split == "test" else 0)
    if n_test >= len(d.images):
        raise ValueError(
            f"n_test must be below the {len(d.images)} digits (leaving training images), "
            f"got {n_test}"
        )
    images = d.images.astype(np.uint8)  # 0..16
    idx = _split_indices(len(images), split, n_test)
    return ImageDataset(
        images[idx],
        d.target[idx],
        levels=17,
        data_range=data_range,
        name="digits",
        num_classes=10,
        **kw,
    )


_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        p = root / name
        if p.is_file():
            return p
    return None


def load_idx_dataset(
    root: str | os.PathLike,
    split: str = "train",
    name: str = "mnist",
    data_range: Sequence[float] = (-1, 1),
    **kw,
) -> ImageDataset:
    """MNIST-format IDX data set from ``root`` (``train-images-idx3-ubyte[.gz]`` etc.)."""
    _check_split(split)
    root = Path(os.path.expanduser(str(root)))
    img_stem, lab_stem = _IDX_FILES[split]
    img, lab = _find(root, img_stem), _find(root, lab_stem)
    if img is None or lab is None:
        hint = ""
        if name == "fashion_mnist":
            hint = (
                f" On Debian/Ubuntu `apt-get install dataset-fashion-mnist` puts them in "
                f"{FASHION_MNIST_DEBIAN_ROOT}."
            )
        raise DataError(
            f"{name}: missing {img_stem}.gz / {lab_stem}.gz (gzip or raw) in data.root={root}. "
            f"Put the four IDX files there or set data.root=/path/to/them.{hint}"
        )
    images, labels = read_idx(img), read_idx(lab)
    if images.ndim != 3 or images.dtype != np.uint8 or 0 in images.shape:
        raise DataError(
            f"{name}: {img} must hold uint8 images [N, H, W] with N, H, W >= 1, "
            f"found {images.dtype.name} of shape {list(images.shape)}"
        )
    if labels.ndim != 1 or len(images) != len(labels):
        raise DataError(
            f"{name}: {img} holds {len(images)} images but {lab} holds labels of shape "
            f"{list(labels.shape)}; expected [{len(images)}]"
        )
    if labels.dtype != np.uint8 or int(labels.max()) > 9:
        raise DataError(
            f"{name}: {lab} must hold uint8 labels 0..9, "
            f"found {labels.dtype.name} up to {int(labels.max())}"
        )
    return ImageDataset(
        images,
        labels.astype(np.int64),
        levels=256,
        data_range=data_range,
        name=name,
        num_classes=10,
        **kw,
    )


def load_cifar10_dataset(
    root: str | os.PathLike, split: str = "train", data_range: Sequence[float] = (-1, 1), **kw
) -> ImageDataset:
    """CIFAR-10 from its binary batches in ``root`` (or ``root/cifar-10-batches-bin``)."""
    _check_split(split)
    root = Path(os.path.expanduser(str(root)))
    if (root / "cifar-10-batches-bin").is_dir():
        root = root / "cifar-10-batches-bin"
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    missing = [n for n in names if not (root / n).is_file()]
    if missing:
        raise DataError(
            f"cifar10: missing {', '.join(missing)} in data.root={root}. Extract the CIFAR-10 "
            f"binary version (cifar-10-binary.tar.gz) there or set "
            f"data.root=/path/to/cifar-10-batches-bin."
        )
    parts = [read_cifar10_batch(root / n) for n in names]
    sizes = {n: len(p[1]) for n, p in zip(names, parts)}
    if len(set(sizes.values())) > 1:  # the release's batches hold 10000 records each
        odd = min(sizes, key=lambda n: list(sizes.values()).count(sizes[n]))
        raise DataError(
            f"cifar10: {root / odd} holds {sizes[odd]} records, unlike the other batches "
            f"({sizes}); a batch was truncated or replaced"
        )
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return ImageDataset(
        images, labels, levels=256, data_range=data_range, name="cifar10", num_classes=10, **kw
    )


def load_image_folder_dataset(
    root: str | os.PathLike,
    split: str = "train",
    image_size: int = 32,
    channels: int = 3,
    data_range: Sequence[float] = (-1, 1),
    n_test: int = 0,
    **kw,
) -> ImageDataset:
    """PNG/JPEG files under ``root`` (recursively; first-level sub-folders are classes).

    All files must share one size and one 8-bit Pillow mode (a file that differs raises
    :class:`DataError` naming it and the first file); they are converted to ``channels``
    (1: "L", 3: "RGB"), centre-cropped to a square and resized to ``image_size``. A file Pillow
    cannot decode raises :class:`DataError` naming it.
    """
    _check_split(split)
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    image_size = check_size("image_size", image_size)
    n_test = check_size("n_test", n_test, minimum=0)
    root = Path(os.path.expanduser(str(root)))
    if not root.is_dir():
        raise DataError(
            f"image_folder: data.root={root} is not a directory; put PNG/JPEG files there"
        )
    files = sorted(
        p for p in root.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()
    )
    if not files:
        raise DataError(f"image_folder: no .png/.jpg/.jpeg files under data.root={root}")
    classes = sorted(
        {p.relative_to(root).parts[0] for p in files if len(p.relative_to(root).parts) > 1}
    )
    cls_index = {c: i for i, c in enumerate(classes)}
    if n_test >= len(files):
        raise ValueError(
            f"n_test must be below the {len(files)} images under data.root={root} "
            f"(leaving training images), got {n_test}"
        )
    if n_test:
        files = [files[i] for i in _split_indices(len(files), split, n_test)]
    elif split == "test":
        raise DataError("image_folder: no test split; set data.n_test to hold out images")
    arrays, labels = [], []
    first: tuple[Path, str, tuple[int, int]] | None = None
    for p in files:
        try:
            with Image.open(p) as im:
                if first is None:
                    first = (p, im.mode, im.size)
                _check_like_first(p, im.mode, im.size, first)
                im = im.convert("L" if channels == 1 else "RGB")
                w, h = im.size
                s = min(w, h)
                im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
                im = im.resize((image_size, image_size), Image.BICUBIC)
                a = np.asarray(im, dtype=np.uint8)
        except DataError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise DataError(f"image_folder: corrupt image file {p}: {e}") from e
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        parts = p.relative_to(root).parts
        labels.append(cls_index[parts[0]] if len(parts) > 1 else 0)
    return ImageDataset(
        np.stack(arrays),
        np.array(labels),
        levels=256,
        data_range=data_range,
        name="image_folder",
        num_classes=max(len(classes), 1),
        **kw,
    )


def _check_like_first(
    p: Path, mode: str, size: tuple[int, int], first: tuple[Path, str, tuple[int, int]]
) -> None:
    """Refuse an image folder whose files differ in Pillow mode or size, naming the odd file."""
    p0, mode0, size0 = first
    if mode not in _IMAGE_MODES:
        raise DataError(
            f"image_folder: {p} has mode {mode!r}; 8-bit images are expected "
            f"(modes {list(_IMAGE_MODES)})"
        )
    if (mode, size) != (mode0, size0):
        raise DataError(
            f"image_folder: {p} is {mode} {size[0]}x{size[1]} but {p0} is {mode0} "
            f"{size0[0]}x{size0[1]}; all images under one data.root must share one size and mode"
        )
