"""Controllable generation: score-function transforms (guidance) and sampler hooks (inpainting,
colorization, SDEdit). Song et al. 2021, Sec. 5 and App. I; Ho & Salimans 2022; Meng et al. 2022."""

from scoresde.controllable.guidance import classifier_free_score_fn, classifier_guided_score_fn
from scoresde.controllable.tasks import (
    colorization_projection,
    colorize,
    inpaint,
    inpaint_projection,
    make_mask,
    sdedit,
)

__all__ = [
    "classifier_free_score_fn",
    "classifier_guided_score_fn",
    "colorization_projection",
    "colorize",
    "inpaint",
    "inpaint_projection",
    "make_mask",
    "sdedit",
]
