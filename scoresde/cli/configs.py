"""Register the command lines' structured configs in Hydra's ConfigStore.

Called from ``conf/__init__.py``, so every way of composing (``python -m``, the compose API in
tests and notebooks) sees the same types and defaults. Schemas are stored under names the YAML
files select: ``<command>_schema`` for a command's top level, ``schema/generate_task/<name>`` for
the generate tasks.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from scoresde.evaluation.config import EvaluateConfig, FeaturesConfig
from scoresde.generation.config import TASK_CONFIGS, GenerateConfig

__all__ = ["register"]

_done = False


def register() -> None:
    """Store the schemas once per process."""
    global _done
    if _done:
        return
    cs = ConfigStore.instance()
    cs.store(name="generate_schema", node=GenerateConfig)
    cs.store(name="evaluate_schema", node=EvaluateConfig)
    cs.store(name="features_schema", node=FeaturesConfig)
    for name, node in TASK_CONFIGS.items():
        cs.store(group="schema/generate_task", name=name, node=node)
    _done = True
