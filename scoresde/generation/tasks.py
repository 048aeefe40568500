"""The generate tasks as a table: ``TASKS[name](task, run, n, sampler, device) -> Plan``.

A :class:`Plan` says how many samples the task makes, how to make a batch of them from their item
indices and seeds (through :func:`scoresde.sampling.sample` or SDEdit), and which extra arrays
(labels, known parts, masks, guides) go into the samples file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
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
from scoresde.data.batch import get_batch
from scoresde.generation.samples_file import from_levels, load_samples, to_levels
from scoresde.sampling import sample
from scoresde.training.classifier import load_classifier

__all__ = ["IMAGE_SUFFIXES", "TASKS", "Plan", "load_guides", "load_mask"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass
class Plan:
    """``n`` samples; ``make_batch(idx, seeds) -> (x, nfe)``; ``extra`` arrays for the file."""

    n: int
    make_batch: Callable[[Tensor, Tensor], tuple[Tensor, int]]
    extra: dict[str, Any] = field(default_factory=dict)


def _shape(run) -> tuple[int, ...]:
    return tuple(int(s) for s in run.data_info["shape"])


def _levels_or_values(x: Tensor, info: Mapping[str, Any]) -> np.ndarray:
    return to_levels(x, info) if info.get("kind") == "image" else x.float().numpy()


def _read_image(path: Path, shape: tuple[int, ...], info: Mapping[str, Any]) -> Tensor:
    """An image file as [C, H, W] in model range, resized (bilinear) to the data's H x W."""
    C, H, W = shape
    with Image.open(path) as im:
        im = im.convert("L" if C == 1 else "RGB")
        if im.size != (W, H):
            im = im.resize((W, H), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return from_levels(a, 256, info.get("data_range") or (-1.0, 1.0))


def load_mask(spec: Any, shape: tuple[int, ...]) -> Tensor:
    """Mask (1 = known) from ``spec``.

    ``spec`` is a built-in name, an image file (white = known), a .npy file or a 0/1 list.
    """
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
            return torch.as_tensor(np.load(path, allow_pickle=False)).float()
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(
                f"task.mask file must be an image ({', '.join(IMAGE_SUFFIXES)}) or .npy, "
                f"got {spec!r}"
            )
        if len(shape) != 3:
            raise ValueError(
                f"image masks need image data [C, H, W]; this run's data has shape {list(shape)}"
            )
        with Image.open(path) as im:
            a = np.asarray(im.convert("L"), dtype=np.uint8)
        if a.shape != tuple(shape[1:]):
            raise ValueError(
                f"task.mask image {spec} has size {list(a.shape)} (H, W); the data's is "
                f"{list(shape[1:])}"
            )
        return torch.as_tensor(a > 127).float()
    return torch.as_tensor(list(spec) if not isinstance(spec, Tensor) else spec).float()


def load_guides(spec: Any, info: Mapping[str, Any]) -> Tensor:
    """SDEdit guides [G, *shape] in model range from samples .npz file(s) or image file(s)."""
    shape = tuple(info["shape"])
    paths = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not paths:
        raise ValueError("task.guide must name an .npz file or image file(s)")
    out = []
    for p in map(Path, paths):
        if not p.is_file():
            raise FileNotFoundError(2, "task.guide: no such file", str(p))
        if p.suffix == ".npz":
            out.append(load_samples(p, shape))
        elif p.suffix.lower() in IMAGE_SUFFIXES:
            if len(shape) != 3:
                raise ValueError(
                    f"task.guide: image guides need image data; this run's data has shape "
                    f"{list(shape)}"
                )
            out.append(_read_image(p, shape, info)[None])
        else:
            raise ValueError(
                f"task.guide files must be .npz or images ({', '.join(IMAGE_SUFFIXES)}), got {p}"
            )
    return torch.cat(out)


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


def data_items(run, split: str, idx: Tensor) -> Tensor:
    """Items ``idx`` (mod the split's length) of the run's data set, as a float tensor."""
    if split not in ("train", "test"):
        raise ValueError(f"task.split must be 'train' or 'test', got {split!r}")
    ds = run.dataset(split)
    idx = idx % len(ds)
    return get_batch(ds, idx)[0].float()


def _sampler(run, sampler: Mapping[str, Any], device):
    opts = dict(sampler)
    method, steps = opts.pop("method", "pc"), opts.pop("steps", None)

    def run_sample(score_fn, idx, seeds, project=None) -> tuple[Tensor, int]:
        res = sample(
            run.sde,
            score_fn,
            (int(idx.numel()), *_shape(run)),
            method=method,
            steps=steps,
            seeds=seeds,
            device=device,
            project=project,
            **opts,
        )
        return res.x, int(res.nfe)

    return run_sample


def _unconditional(task, run, n, sampler, device) -> Plan:
    draw, score = _sampler(run, sampler, device), run.model.score_fn()
    return Plan(n, lambda idx, seeds: draw(score, idx, seeds))


def _class(task, run, n, sampler, device) -> Plan:
    C = model_num_classes(run.model)
    if C is None:
        raise ValueError(
            "task=class needs a class-conditional model (train with model.conditional=true); "
            f"{run.checkpoint} is unconditional"
        )
    y, draw, w = _labels(task.get("y"), n, C), _sampler(run, sampler, device), float(task.w)

    def make(idx, seeds):
        score = classifier_free_score_fn(run.model, y[idx].to(device), w=w, num_classes=C)
        return draw(score, idx, seeds)

    return Plan(n, make, {"labels": y.numpy()})


def _classifier_guidance(task, run, n, sampler, device) -> Plan:
    clf, _ = load_classifier(task.classifier_ckpt, device=device)
    if tuple(clf.data_shape) != _shape(run):
        raise ValueError(
            f"task.classifier_ckpt: classifier data shape {list(clf.data_shape)} != model data "
            f"shape {list(_shape(run))}"
        )
    C, scale = clf.num_classes, float(task.scale)
    y, draw, base = (
        _labels(task.get("y"), n, C),
        _sampler(run, sampler, device),
        run.model.score_fn(),
    )

    def make(idx, seeds):
        score = classifier_guided_score_fn(base, clf, y[idx].to(device), scale=scale, num_classes=C)
        return draw(score, idx, seeds)

    return Plan(n, make, {"labels": y.numpy()})


def _inpaint(task, run, n, sampler, device) -> Plan:
    info, shape = run.data_info, _shape(run)
    data = data_items(run, task.split, int(task.start) + torch.arange(n))
    mask = prepare_mask(load_mask(task.mask, shape), data)
    draw, score = _sampler(run, sampler, device), run.model.score_fn()

    def make(idx, seeds):
        proj = inpaint_projection(run.sde, data[idx].to(device), mask.to(device), seeds=seeds)
        return draw(score, idx, seeds, proj)

    extra = {"known": _levels_or_values(data, info), "mask": mask.cpu().numpy()}
    return Plan(n, make, extra)


def _colorize(task, run, n, sampler, device) -> Plan:
    info, shape = run.data_info, _shape(run)
    if len(shape) != 3 or shape[0] != 3:
        raise ValueError(
            f"task=colorize needs RGB image data [3, H, W]; this run's data has shape {list(shape)}"
        )
    gray = to_grayscale(data_items(run, task.split, int(task.start) + torch.arange(n)))
    draw, score = _sampler(run, sampler, device), run.model.score_fn()

    def make(idx, seeds):
        proj = colorization_projection(run.sde, gray[idx].to(device), seeds=seeds)
        return draw(score, idx, seeds, proj)

    return Plan(n, make, {"known": _levels_or_values(gray.expand(-1, 3, *shape[1:]), info)})


def _sdedit(task, run, n, sampler, device) -> Plan:
    t0 = check_t0(run.sde, float(task.t0))
    guides = load_guides(task.guide, run.data_info)
    npg = task.get("n_per_guide") or 1
    if isinstance(npg, bool) or not isinstance(npg, int) or npg < 1:
        raise ValueError(f"task.n_per_guide must be an integer >= 1, got {npg!r}")
    opts = dict(sampler)
    method, steps, eps = opts.pop("method", "pc"), opts.pop("steps", None), opts.pop("eps", 1e-3)
    score = run.model.score_fn()

    def make(idx, seeds):
        g = guides[idx // npg].to(device)
        kw = {"seeds": seeds, "method": method, "steps": steps, "eps": float(eps), **opts}
        res = sdedit(run.sde, score, g, t0, 1, **kw)
        return res.x, int(res.nfe)

    return Plan(guides.shape[0] * npg, make, {"guides": _levels_or_values(guides, run.data_info)})


TASKS: dict[str, Callable[..., Plan]] = {
    "unconditional": _unconditional,
    "class": _class,
    "classifier_guidance": _classifier_guidance,
    "inpaint": _inpaint,
    "colorize": _colorize,
    "sdedit": _sdedit,
}
