"""Generation: the task table, the one sharded sample-in-batches loop, the samples file.

``generate(cfg, out_dir)`` is the library call behind ``python -m scoresde.generate``.
"""

from scoresde.generation.config import TASK_CONFIGS, GenerateConfig
from scoresde.generation.driver import generate
from scoresde.generation.loop import Drawn, sample_in_batches
from scoresde.generation.samples_file import (
    FORMAT,
    from_levels,
    load_samples,
    save_samples,
    to_levels,
)
from scoresde.generation.tasks import TASKS, load_guides, load_mask

__all__ = [
    "FORMAT",
    "TASKS",
    "TASK_CONFIGS",
    "Drawn",
    "GenerateConfig",
    "from_levels",
    "generate",
    "load_guides",
    "load_mask",
    "load_samples",
    "sample_in_batches",
    "save_samples",
    "to_levels",
]
