"""Dataset file formats, read and checked against their own headers (no torchvision).

- IDX (MNIST / Fashion-MNIST): magic ``0 0 dtype ndim``, big-endian dims, then the data; gzip or
  raw. A file whose size differs from its header's shape is refused.
- CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes (R, G, B planes of 32x32);
  a file that is not whole records is refused.

Refusals are :class:`DataError` (a ``ValueError``) naming the file.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["FASHION_MNIST_DEBIAN_ROOT", "DataError", "read_cifar10_batch", "read_idx", "write_idx"]

FASHION_MNIST_DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CIFAR_RECORD = 1 + 3 * 32 * 32  # one label byte, then the R, G, B planes of 32x32


class DataError(ValueError):
    """Missing or corrupt data files; the message says which file and what to do."""


# ---------------------------------------------------------------------------------- readers
def _open_maybe_gz(path: Path) -> bytes:
    with open(path, "rb") as f:
        head = f.read(2)
    try:
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataError(f"corrupt file {path}: {e}") from e


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format), gzip-compressed or raw.

    Header: two zero bytes, a type code (0x08 = uint8 ...), the number of dimensions, then one
    big-endian int32 per dimension; the data follow in C order.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing IDX file {path}")
    buf = _open_maybe_gz(path)
    if len(buf) < 4 or buf[0] != 0 or buf[1] != 0 or buf[2] not in _IDX_DTYPES:
        raise DataError(
            f"corrupt IDX file {path}: bad magic number {buf[:4].hex() if buf else ''!r}"
        )
    ndim = buf[3]
    if len(buf) < 4 + 4 * ndim:
        raise DataError(f"corrupt IDX file {path}: truncated header")
    dims = [int.from_bytes(buf[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype = np.dtype(_IDX_DTYPES[buf[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    data = buf[4 + 4 * ndim :]
    if len(data) != expected:
        raise DataError(
            f"corrupt IDX file {path}: header says shape {dims} ({expected} bytes), "
            f"found {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=dtype).reshape(dims).copy()


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array in IDX format (gzip when ``compress`` or the name ends in .gz)."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    payload = header + array.tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def read_cifar10_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch: images uint8 ``[N, 3, 32, 32]``, labels int64 ``[N]``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing CIFAR-10 batch {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    rec = _CIFAR_RECORD
    if raw.size == 0 or raw.size % rec:
        raise DataError(
            f"corrupt CIFAR-10 batch {path}: {raw.size} bytes is not a positive multiple of the "
            f"{rec}-byte record (1 label byte + 3072 pixel bytes)"
        )
    raw = raw.reshape(-1, rec)
    labels = raw[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"corrupt CIFAR-10 batch {path}: label {int(labels.max())} > 9")
    return raw[:, 1:].reshape(-1, 3, 32, 32).copy(), labels
