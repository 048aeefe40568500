"""Typed configuration of ``python -m scoresde.generate`` and of each generation task.

These dataclasses are the one place the defaults and types live: they are Hydra structured
configs (registered by :func:`scoresde.cli.configs.register`); ``conf/generate.yaml`` and
``conf/generate/task/*.yaml`` only select them. A wrong type (``seed=x``) or an unknown key is
refused when the config is composed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

__all__ = [
    "TASK_CONFIGS",
    "ClassTask",
    "ClassifierGuidanceTask",
    "ColorizeTask",
    "GenerateConfig",
    "InpaintTask",
    "SDEditTask",
    "UnconditionalTask",
]


@dataclass
class UnconditionalTask:
    """Plain samples (a conditional model uses its null label)."""

    name: str = "unconditional"


@dataclass
class ClassTask:
    """Classifier-free guidance (Ho & Salimans 2022): (1 + w) s(x, t, y) - w s(x, t)."""

    name: str = "class"
    y: Any = None  # int, list (cycled over samples) or null (sample i gets class i mod classes)
    w: float = 0.0  # guidance scale; 0 = the conditional model as is, > 0 sharpens


@dataclass
class ClassifierGuidanceTask:
    """s(x, t) + scale * grad log p_t(y | x) with a noisy classifier (Dhariwal & Nichol 2021)."""

    name: str = "classifier_guidance"
    classifier_ckpt: str = MISSING  # classifier run directory or checkpoint file
    scale: float = 1.0  # 1 = Bayes (p_t(x | y)); > 1 sharpens
    y: Any = None


@dataclass
class InpaintTask:
    """Fill the masked part of data-set items (Song et al. 2021, app. I)."""

    name: str = "inpaint"
    mask: Any = "half"  # a built-in mask name, an image file (white = known), .npy or 0/1 list
    split: str = "test"  # data-set split the known parts come from
    start: int = 0  # sample i inpaints item (start + i) mod len(split)


@dataclass
class ColorizeTask:
    """Colour the grey versions of data-set items (RGB data only; Song et al. 2021, app. I)."""

    name: str = "colorize"
    split: str = "test"
    start: int = 0


@dataclass
class SDEditTask:
    """SDEdit (Meng et al. 2022): perturb guides to t0 and denoise."""

    name: str = "sdedit"
    guide: Any = MISSING  # samples .npz (samples_model / samples_levels) or image file(s)
    t0: float = 0.5  # in (0, T]: small = faithful to the guide, T = ignore it
    n_per_guide: int = 1  # samples per guide (n is then ignored)


TASK_CONFIGS: dict[str, type] = {
    "unconditional": UnconditionalTask,
    "class": ClassTask,
    "classifier_guidance": ClassifierGuidanceTask,
    "inpaint": InpaintTask,
    "colorize": ColorizeTask,
    "sdedit": SDEditTask,
}


@dataclass
class GenerateConfig:
    """``python -m scoresde.generate``: samples from a trained run."""

    ckpt: str = MISSING  # run directory (uses checkpoints/last.pt) or a checkpoint file
    n: int = 64  # number of samples (sdedit: guides x task.n_per_guide)
    batch_size: int = 64  # samples per sampler call; results do not depend on it
    seed: int = 0  # per-sample seeds are drawn from it
    device: str = "cpu"  # cpu | cuda | cuda:N | auto
    use_ema: bool = True  # EMA weights (false: raw weights)
    progress: bool = True  # progress bar over batches
    nrow: int | None = None  # images per row of samples.png (null: square)
    threads: int | None = 1  # torch intra-op threads (null: torch's default)
    resume: bool = True  # continue from the batches a killed run left in <out>/partial
    task: Any = MISSING
    sampler: Any = field(default_factory=dict)
