"""Hydra entry point ``python -m scoresde.generate``: samples from a trained run (configs: conf/generate.yaml).

    python -m scoresde.generate ckpt=outputs/<date>/<time> n=64 batch_size=32 sampler=dpm_solver
    python -m scoresde.generate ckpt=RUN task=class task.y=3 task.w=2
    python -m scoresde.generate ckpt=RUN task=classifier_guidance task.classifier_ckpt=CLF task.scale=2
    python -m scoresde.generate ckpt=RUN task=inpaint task.mask=center
    python -m scoresde.generate ckpt=RUN task=colorize
    python -m scoresde.generate ckpt=RUN task=sdedit task.guide=painting.png task.t0=0.4 task.n_per_guide=8

Writes (atomically) to the Hydra output directory: ``samples.npz`` (``samples`` in the data's own
range -- integer pixel levels 0..levels-1 for images, raw values for vectors -- ``samples_model`` in
model range, plus ``labels`` / ``known`` / ``guides`` where the task has them), ``samples.png`` (a
grid or scatter plot) and ``settings.json`` (config, NFE, wall time).

Reproducibility: per-sample seeds are drawn once from ``seed``; each sample's noise (and its
projection / SDEdit noise) comes from its own keyed stream, so the samples do not depend on
``batch_size`` (every method except ``sde``, whose Brownian motion is batch-wide).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from scoresde.controllable.guidance import (
    as_labels,
    classifier_free_score_fn,
    classifier_guided_score_fn,
    model_num_classes,
)
from scoresde.controllable.tasks import (
    MASK_NAMES,
    check_t0,
    colorization_projection,
    inpaint_projection,
    make_mask,
    prepare_mask,
    sdedit,
    to_grayscale,
)
from scoresde.io.atomic import atomic_write
from scoresde.sampling import sample
from scoresde.sampling.noise import draw_seeds

__all__ = [
    "TASKS",
    "generate",
    "load_guides",
    "load_mask",
    "main",
    "to_data_range",
    "to_model_range",
]

TASKS = ("unconditional", "class", "classifier_guidance", "inpaint", "colorize", "sdedit")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# ------------------------------------------------------------------------------ data range
def _range(info: dict[str, Any]) -> tuple[float, float]:
    r = info.get("data_range") or (-1.0, 1.0)
    return float(r[0]), float(r[1])


def to_data_range(x: Tensor, info: dict[str, Any]) -> np.ndarray:
    """Model range -> the data's own range: integer levels 0..levels-1 (uint8/uint16) for images."""
    a = x.detach().cpu().double()
    if info.get("kind") != "image":
        return a.float().numpy()
    lo, hi = _range(info)
    levels = int(info.get("levels") or 256)
    u = ((a - lo) / (hi - lo)).clamp(0.0, 1.0)
    q = torch.round(u * (levels - 1)).numpy()
    return q.astype(np.uint8 if levels <= 256 else np.uint16)


def to_model_range(v: np.ndarray, info: dict[str, Any], levels: int | None = None) -> Tensor:
    """Integer levels (0..levels-1, default the data's) -> model range; floats pass through."""
    a = np.asarray(v)
    if info.get("kind") != "image" or a.dtype.kind == "f":
        return torch.as_tensor(a, dtype=torch.float32)
    lo, hi = _range(info)
    levels = levels or int(info.get("levels") or 256)
    u = torch.as_tensor(a.astype(np.float64) / (levels - 1), dtype=torch.float32)
    return lo + (hi - lo) * u


def _read_image(path: Path, shape: tuple[int, ...], info: dict[str, Any]) -> Tensor:
    """An image file as [C, H, W] in model range, resized (bilinear) to the data's H x W."""
    from PIL import Image

    C, H, W = shape
    with Image.open(path) as im:
        im = im.convert("L" if C == 1 else "RGB")
        if im.size != (W, H):
            im = im.resize((W, H), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return to_model_range(a, info, levels=256)


def load_mask(spec: Any, shape: tuple[int, ...]) -> Tensor:
    """Mask (1 = known) from a built-in name, an image file (white = known), a .npy file or a 0/1 list."""
    if isinstance(spec, str) and spec in MASK_NAMES:
        return make_mask(spec, shape)
    if isinstance(spec, str):
        path = Path(spec)
        if not path.is_file():
            raise ValueError(
                f"task.mask must be one of {list(MASK_NAMES)}, an image/.npy file or a 0/1 list; "
                f"no file {spec!r}"
            )
        if path.suffix == ".npy":
            return torch.as_tensor(np.load(path)).float()
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"mask file must be an image ({', '.join(IMAGE_SUFFIXES)}) or .npy, got {spec!r}"
            )
        if len(shape) != 3:
            raise ValueError(
                f"image masks need image data [C, H, W]; this run's data has shape {list(shape)}"
            )
        from PIL import Image

        with Image.open(path) as im:
            a = np.asarray(im.convert("L"), dtype=np.uint8)
        if a.shape != tuple(shape[1:]):
            raise ValueError(
                f"mask image {spec} has size {list(a.shape)} (H, W); the data's is {list(shape[1:])}"
            )
        return torch.as_tensor(a > 127).float()
    return torch.as_tensor(list(spec) if not isinstance(spec, Tensor) else spec).float()


def load_guides(spec: Any, info: dict[str, Any]) -> Tensor:
    """SDEdit guides [G, *shape] in model range from an .npz file or image file(s)."""
    shape = tuple(info["shape"])
    paths = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not paths:
        raise ValueError("task.guide must name an .npz file or image file(s)")
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise ValueError(f"guide file {p} does not exist")
        if p.suffix == ".npz":
            with np.load(p) as z:
                key = next((k for k in ("samples_model", "samples") if k in z.files), z.files[0])
                arr = z[key]
            x = (
                torch.as_tensor(arr, dtype=torch.float32)
                if key == "samples_model"
                else to_model_range(arr, info)
            )
            x = x.reshape(-1, *x.shape[-len(shape) :]) if x.dim() > len(shape) else x[None]
            out.append(x)
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            if len(shape) != 3:
                raise ValueError(
                    f"image guides need image data; this run's data has shape {list(shape)}"
                )
            out.append(_read_image(p, shape, info)[None])
        else:
            raise ValueError(
                f"guide files must be .npz or images ({', '.join(IMAGE_SUFFIXES)}), got {p}"
            )
    guides = torch.cat(out)
    if tuple(guides.shape[1:]) != shape:
        raise ValueError(
            f"guides have shape {list(guides.shape[1:])}; the model's data shape is {list(shape)}"
        )
    return guides


# ------------------------------------------------------------------------------ tasks
def _labels(spec: Any, n: int, num_classes: int) -> Tensor:
    if spec is None:
        return torch.arange(n) % num_classes
    if isinstance(spec, (list, tuple)) or (hasattr(spec, "__len__") and not isinstance(spec, str)):
        vals = torch.as_tensor(list(spec), dtype=torch.long)
        if vals.numel() == 0:
            raise ValueError("task.y must not be empty")
        y = vals[torch.arange(n) % vals.numel()]
    else:
        if isinstance(spec, bool) or not isinstance(spec, int):
            raise ValueError(f"task.y must be an int, a list of ints or null, got {spec!r}")
        y = torch.full((n,), int(spec), dtype=torch.long)
    return as_labels(y, n, num_classes)


def _data_items(run, split: str, start: int, n: int) -> Tensor:
    ds = run.dataset(split)
    idx = (int(start) + torch.arange(n)) % len(ds)
    if hasattr(ds, "get_batch"):
        return ds.get_batch(idx)[0].float()
    return torch.stack([ds[int(i)][0] for i in idx]).float()


def _plan(cfg, run, n: int, device) -> tuple[int, Callable[[slice, Tensor], Any], dict[str, Any]]:
    """(n, make_batch(rows, seeds) -> SampleResult, extra arrays to save)."""
    task = cfg.task
    name = task.name
    if name not in TASKS:
        raise ValueError(
            f"task must be one of {list(TASKS)} for python -m scoresde.generate, got {name!r}"
        )
    sde, model, info = run.sde, run.model, run.data_info
    shape = tuple(int(s) for s in info["shape"])
    opts = dict(cfg.sampler)
    method = opts.pop("method", "pc")
    steps = opts.pop("steps", None)
    extra: dict[str, Any] = {}

    def run_sample(score_fn, rows, seeds, project=None):
        return sample(
            sde,
            score_fn,
            (rows.stop - rows.start, *shape),
            method=method,
            steps=steps,
            seeds=seeds,
            device=device,
            project=project,
            **opts,
        )

    if name == "unconditional":
        score = model.score_fn()
        return n, lambda rows, seeds: run_sample(score, rows, seeds), extra
    if name in ("class", "classifier_guidance"):
        C = model_num_classes(model) if name == "class" else None
        if name == "class" and C is None:
            raise ValueError(
                "task=class needs a class-conditional model (train with model.conditional=true); "
                f"{run.checkpoint} is unconditional"
            )
        if name == "classifier_guidance":
            from scoresde.training.classifier import load_classifier

            clf, _ = load_classifier(task.classifier_ckpt, device=device)
            if tuple(clf.data_shape) != shape:
                raise ValueError(
                    f"classifier data shape {list(clf.data_shape)} != model data shape {list(shape)}"
                )
            C = clf.num_classes
        y = _labels(task.get("y"), n, C)
        extra["labels"] = y.numpy()

        def make(rows, seeds):
            yb = y[rows].to(device)
            if name == "class":
                score = classifier_free_score_fn(model, yb, w=float(task.w), num_classes=C)
            else:
                score = classifier_guided_score_fn(
                    model.score_fn(), clf, yb, scale=float(task.scale), num_classes=C
                )
            return run_sample(score, rows, seeds)

        return n, make, extra
    if name in ("inpaint", "colorize"):
        if name == "colorize" and (len(shape) != 3 or shape[0] != 3):
            raise ValueError(
                f"task=colorize needs RGB image data [3, H, W]; this run's data has shape {list(shape)}"
            )
        data = _data_items(run, task.split, task.start, n)
        score = model.score_fn()
        if name == "inpaint":
            mask = prepare_mask(load_mask(task.mask, shape), data)
            extra["known"] = to_data_range(data, info)
            extra["mask"] = mask.cpu().numpy()

            def make(rows, seeds):
                proj = inpaint_projection(sde, data[rows].to(device), mask.to(device), seeds=seeds)
                return run_sample(score, rows, seeds, proj)
        else:
            gray = to_grayscale(data)
            extra["known"] = to_data_range(gray.expand(-1, 3, *shape[1:]), info)

            def make(rows, seeds):
                proj = colorization_projection(sde, gray[rows].to(device), seeds=seeds)
                return run_sample(score, rows, seeds, proj)

        return n, make, extra
    # sdedit
    t0 = check_t0(sde, float(task.t0))
    guides = load_guides(task.guide, info)
    npg = int(task.get("n_per_guide") or 1)
    if npg < 1:
        raise ValueError(f"task.n_per_guide must be an integer >= 1, got {npg}")
    n = guides.shape[0] * npg
    extra["guides"] = to_data_range(guides, info)
    score = model.score_fn()
    eps = float(opts.pop("eps", 1e-3))

    def make(rows, seeds):
        g = guides[torch.arange(rows.start, rows.stop) // npg].to(device)
        return sdedit(
            sde, score, g, t0, 1, seeds=seeds, method=method, steps=steps, eps=eps, **opts
        )

    return n, make, extra


# ------------------------------------------------------------------------------ driver
def _check_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return v


def generate(cfg: Any, out_dir: str | Path) -> dict[str, Any]:
    """Run the generation described by ``cfg`` (conf/generate.yaml) and write its files into ``out_dir``.

    Returns the settings dict (also written to ``settings.json``), with ``nfe`` (score evaluations,
    summed over batches), ``wall_time_s`` and the output paths.
    """
    from scoresde.io.runs import load_run
    from scoresde.training.trainer import resolve_device

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    n = _check_int("n", cfg.n)
    batch_size = _check_int("batch_size", cfg.batch_size)
    device = resolve_device(cfg.get("device", "cpu"))
    run = load_run(cfg.ckpt, device=device, use_ema=bool(cfg.get("use_ema", True)))
    info = run.data_info
    n, make_batch, extra = _plan(cfg, run, n, device)
    seeds = draw_seeds(n, torch.Generator().manual_seed(int(cfg.seed)))
    start = time.perf_counter()
    xs, nfe = [], 0
    starts = range(0, n, batch_size)
    if cfg.get("progress", True):
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"generate ({cfg.task.name})", unit="batch")
    for i0 in starts:
        rows = slice(i0, min(i0 + batch_size, n))
        res = make_batch(rows, seeds[rows])
        xs.append(res.x.detach().float().cpu())
        nfe += int(res.nfe)
    x = torch.cat(xs)
    wall = time.perf_counter() - start

    arrays = {"samples": to_data_range(x, info), "samples_model": x.numpy(), **extra}
    npz = atomic_write(out_dir / "samples.npz", lambda p: _savez(p, arrays))
    png = out_dir / "samples.png"
    ref = None
    if info.get("kind") != "image" and x.dim() == 2:
        ref = _data_items(run, "test", 0, min(2000, n * 4)) if x.shape[1] >= 2 else None
    if info.get("kind") == "image" or (x.dim() == 2 and x.shape[1] >= 2):
        from scoresde.io.plots import save_image_grid, save_samples

        if info.get("kind") == "image":
            atomic_write(png, lambda p: save_image_grid(x, p, _range(info), nrow=cfg.get("nrow")))
        else:
            atomic_write(
                png, lambda p: save_samples(x, p, "vector", reference=ref, title=cfg.task.name)
            )
    settings = {
        "config": OmegaConf.to_container(cfg, resolve=True)
        if OmegaConf.is_config(cfg)
        else dict(cfg),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "n": n,
        "batch_size": batch_size,
        "nfe": nfe,
        "nfe_per_sample_batch": nfe / max(1, len(xs)),
        "wall_time_s": wall,
        "device": str(device),
        "samples": str(npz),
        "grid": str(png) if png.exists() else None,
    }
    atomic_write(
        out_dir / "settings.json",
        lambda p: p.write_text(json.dumps(settings, indent=2, default=str)),
    )
    return settings


def _savez(path: Path, arrays: dict[str, Any]) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@hydra.main(version_base="1.3", config_path="pkg://scoresde.conf", config_name="generate")
def main(cfg: DictConfig) -> None:
    """``python -m scoresde.generate``: :func:`generate` into Hydra's output directory."""
    s = generate(cfg, HydraConfig.get().runtime.output_dir)
    print(f"wrote {s['samples']} ({s['n']} samples, {s['nfe']} NFE, {s['wall_time_s']:.1f} s)")


if __name__ == "__main__":
    main()
