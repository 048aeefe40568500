"""The samples file (``samples.npz``): one meaning for every writer and reader.

Arrays (``FORMAT = "scoresde-samples-v1"``):

- ``samples_model``: float32 ``[N, *shape]`` in **model range** (what the sampler returned; the
  range the network was trained on, ``data_range``). Every reader scores this array.
- ``samples_levels``: images only, integer pixel levels ``0 .. levels-1`` (uint8 / uint16), the
  samples as an 8-bit image file would hold them.
- ``data_range`` (float64 ``[lo, hi]``: the model range), ``levels`` (int, images), ``format``;
  plus the task's arrays (``labels``, ``known``, ``mask``, ``guides``; ``known`` and ``guides``
  as pixel levels for images).

:func:`load_samples` reads ``samples_model`` (or ``x``, the model-range name of plain files), or
``samples_levels`` converted with the file's ``levels`` / ``data_range``. The old key ``samples``
is refused: generate once stored pixel levels there and evaluate read it as model range.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from scoresde.io.atomic import atomic_write

__all__ = [
    "FORMAT",
    "from_levels",
    "load_samples",
    "save_samples",
    "to_levels",
]

FORMAT = "scoresde-samples-v1"


def _range(info: Mapping[str, Any]) -> tuple[float, float]:
    r = info.get("data_range") or (-1.0, 1.0)
    return float(r[0]), float(r[1])


def to_levels(x: Tensor, info: Mapping[str, Any]) -> np.ndarray:
    """Model range -> integer levels ``0..levels-1`` (uint8 / uint16), clamped: images only."""
    lo, hi = _range(info)
    levels = int(info.get("levels") or 256)
    u = ((x.detach().cpu().double() - lo) / (hi - lo)).clamp(0.0, 1.0)
    q = torch.round(u * (levels - 1)).numpy()
    return q.astype(np.uint8 if levels <= 256 else np.uint16)


def from_levels(v: np.ndarray, levels: int, data_range: Sequence[float]) -> Tensor:
    """Integer levels ``0..levels-1`` -> model range ``[lo, hi]`` (float32)."""
    lo, hi = float(data_range[0]), float(data_range[1])
    u = torch.as_tensor(np.asarray(v, dtype=np.float64) / (levels - 1))
    return (lo + (hi - lo) * u).float()


def save_samples(
    path: str | Path, x: Tensor, info: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> Path:
    """Write ``x`` (model range) and its pixel levels (images) atomically to ``path``."""
    x = x.detach().cpu().float()
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT),
        "samples_model": x.numpy(),
        "data_range": np.array(_range(info), dtype=np.float64),
    }
    if info.get("kind") == "image":
        arrays["samples_levels"] = to_levels(x, info)
        arrays["levels"] = np.array(int(info.get("levels") or 256))
    arrays.update(extra or {})

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            np.savez(f, **arrays)

    return atomic_write(path, write)


def _expected(shape: Sequence[int] | None) -> str:
    dims = f"[N, {', '.join(map(str, shape))}]" if shape else "[N, D] or [N, C, H, W]"
    return (
        f"expected an .npz with samples_model (float, model range) or samples_levels (+ levels, "
        f"data_range), shape {dims}"
    )


def load_samples(path: str | Path, shape: Sequence[int] | None = None) -> Tensor:
    """Model-range float32 samples ``[N, *shape]`` from a samples file (see the module doc).

    Refuses, naming the file and what was expected: a missing or non-npz file, no known key,
    the ambiguous key ``samples``, a non-numeric dtype, a wrong shape, NaN / inf values.
    ``[N, H, W]`` gets a channel axis.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(2, f"samples file not found ({_expected(shape)})", str(path))
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an .npz file: {_expected(shape)}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = set(z.files)
            if "samples_model" in files or "x" in files:
                a = z["samples_model" if "samples_model" in files else "x"]
                if a.dtype.kind != "f":
                    raise ValueError(
                        f"{path}: samples_model must hold floats (model range), got {a.dtype}"
                    )
                x = torch.from_numpy(np.asarray(a, dtype=np.float32))
            elif "samples_levels" in files:
                a = z["samples_levels"]
                if a.dtype.kind not in "ui" or "levels" not in files or "data_range" not in files:
                    raise ValueError(
                        f"{path}: samples_levels must be integer levels stored with levels and "
                        f"data_range, got dtype {a.dtype} and arrays {sorted(files)}"
                    )
                x = from_levels(a, int(z["levels"]), z["data_range"].tolist())
            elif "samples" in files:
                raise ValueError(
                    f"{path}: the array 'samples' is ambiguous (older generate files hold pixel "
                    "levels there): store model-range values as samples_model, or integer levels "
                    "as samples_levels with levels and data_range"
                )
            else:
                raise ValueError(
                    f"{path}: no samples array (found {sorted(files)}); {_expected(shape)}"
                )
    except (zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"{path} is not a readable .npz file ({e}): {_expected(shape)}") from e
    if x.dim() == 3:
        x = x[:, None]
    if x.dim() not in (2, 4) or x.shape[0] == 0:
        raise ValueError(f"{path}: samples have shape {list(x.shape)}; {_expected(shape)}")
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        raise ValueError(f"{path}: samples have shape {list(x.shape)}; {_expected(shape)}")
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise ValueError(f"{path}: {bad} sample values are NaN or inf; expected finite samples")
    return x
