"""Figures without pyplot state: image grids (numpy + Pillow), 2-D scatter plots and loss curves
(matplotlib's object API with the Agg canvas, safe in worker processes and without a display).
Every figure is written atomically (:func:`scoresde.io.atomic.atomic_write`): a kill mid-write
leaves the previous file or none, never a truncated PNG."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from scoresde.io.atomic import atomic_write

__all__ = ["make_grid", "save_image_grid", "save_loss_curve", "save_samples", "save_scatter"]

PathLike = str | os.PathLike


def _np(x) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def make_grid(
    x,
    data_range: Sequence[float] = (-1.0, 1.0),
    nrow: int | None = None,
    padding: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile images ``x`` [N, C, H, W] (in ``data_range``) into a uint8 array
    [rows*H', cols*W', C]."""
    a = _np(x)
    if a.ndim != 4:
        raise ValueError(f"x must have shape [N, C, H, W], got {a.shape}")
    lo, hi = float(data_range[0]), float(data_range[1])
    a = np.clip((a - lo) / (hi - lo), 0.0, 1.0)
    n, c, h, w = a.shape
    ncol = nrow or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncol)
    grid = np.full(
        (c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value, np.float32
    )
    for i in range(n):
        r, q = divmod(i, ncol)
        y0, x0 = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y0 : y0 + h, x0 : x0 + w] = a[i]
    return (grid.transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def save_image_grid(
    x,
    path: PathLike,
    data_range: Sequence[float] = (-1.0, 1.0),
    nrow: int | None = None,
    scale: int | None = None,
) -> Path:
    """Save a PNG grid of images ``x`` [N, C, H, W]; small images are upscaled (nearest) to
    ~32 px."""
    from PIL import Image

    grid = make_grid(x, data_range, nrow)
    h = _np(x).shape[2]
    scale = scale or max(1, 32 // h)
    img = Image.fromarray(grid[..., 0] if grid.shape[2] == 1 else grid)
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    fmt = Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")
    return atomic_write(path, lambda p: img.save(p, format=fmt))


def _figure(figsize: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: PathLike) -> Path:
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    return atomic_write(path, lambda p: fig.savefig(p, format=fmt))


def save_scatter(
    x, path: PathLike, reference=None, title: str = "", lim: float | None = None
) -> Path:
    """Scatter plot of 2-D points ``x`` [N, 2] (and ``reference`` data [M, 2] beside, if given)."""
    a = _np(x)
    panels = [("samples", a)] if reference is None else [("data", _np(reference)), ("samples", a)]
    fig = _figure((4 * len(panels), 4))
    if lim is None:
        pts = np.concatenate([p for _, p in panels])
        finite = pts[np.isfinite(pts).all(1)]
        lim = float(np.percentile(np.abs(finite), 99.5)) * 1.15 if len(finite) else 3.0
    for k, (name, p) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        ax.scatter(p[:, 0], p[:, 1], s=1.5, alpha=0.5, color="C0" if name == "data" else "C1")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"{name} {title}".strip())
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.92, wspace=0.2)
    return _save_figure(fig, path)


def save_loss_curve(
    steps: Sequence[int],
    losses: Sequence[float],
    path: PathLike,
    smooth: int = 50,
    title: str = "training loss",
) -> Path:
    """Loss against step (raw, light) with a moving average over ``smooth`` steps; log y-axis if
    > 0."""
    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(losses, dtype=np.float64)
    fig = _figure((6, 4))
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(s, v, lw=0.5, alpha=0.35, color="C0", label="loss")
    k = max(1, min(smooth, len(v) // 5 or 1))
    if len(v) >= k > 1:
        ma = np.convolve(v, np.ones(k) / k, mode="valid")
        ax.plot(s[k - 1 :], ma, color="C1", label=f"moving average ({k})")
    if len(v) and np.all(v[np.isfinite(v)] > 0):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)
    return _save_figure(fig, path)


def save_samples(
    x: Tensor,
    path: PathLike,
    kind: str,
    data_range: Sequence[float] | None = None,
    reference: Tensor | None = None,
    title: str = "",
) -> Path:
    """Grid for images (``kind="image"``), scatter for 2-D vectors (with ``reference`` data)."""
    if kind == "image":
        return save_image_grid(x, path, data_range or (-1.0, 1.0))
    if x.dim() == 2 and x.shape[1] == 2:
        return save_scatter(x, path, reference=reference, title=title)
    if x.dim() == 2:  # other vectors: scatter of the first two coordinates
        ref = reference[:, :2] if reference is not None else None
        return save_scatter(x[:, :2], path, reference=ref, title=title)
    raise ValueError(f"cannot plot samples of shape {tuple(x.shape)} with kind={kind!r}")


if __name__ == "__main__":  # pragma: no cover - manual check
    save_image_grid(torch.rand(16, 1, 8, 8) * 2 - 1, "/tmp/grid.png")
