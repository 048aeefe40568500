"""Experiment logging: a thin wrapper over wandb (the only library module that imports it).

``make_logger(cfg.logger, cfg, run_dir, name, group)`` returns a :class:`Logger` with
``log(dict, step)``, ``log_image(key, path_or_array, step)`` and ``finish()``.
``cfg.logger.name``: ``wandb`` or ``none`` (no-op). The wandb mode is ``offline`` by default
(upload later with ``wandb sync <run_dir>/wandb/offline-run-*``); the ``WANDB_MODE`` environment
variable wins over ``cfg.logger.mode``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["LOGGER_NAMES", "WANDB_MODES", "Logger", "NullLogger", "WandbLogger", "make_logger"]

LOGGER_NAMES = ("wandb", "none")
WANDB_MODES = ("offline", "online", "disabled")


class Logger:
    """Interface: scalar metrics, images, finish."""

    def log(self, metrics: Mapping[str, Any], step: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def log_image(self, key: str, image: Any, step: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self, exit_code: int = 0) -> None:  # pragma: no cover - interface
        raise NotImplementedError


class NullLogger(Logger):
    """Logs nothing (``logger=none``, non-zero ranks)."""

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        pass

    def log_image(self, key: str, image: Any, step: int) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbLogger(Logger):
    """A wandb run in ``<run_dir>/wandb``; config = the resolved experiment config."""

    def __init__(
        self,
        project: str,
        run_dir: str | Path,
        config: dict | None = None,
        mode: str = "offline",
        name: str | None = None,
        group: str | None = None,
        entity: str | None = None,
        tags: list | None = None,
        job_type: str = "train",
    ):
        import wandb

        self._wandb = wandb
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=project,
            entity=entity,
            dir=str(run_dir),
            name=name,
            group=group,
            tags=tags,
            job_type=job_type,
            config=config,
            mode=mode,
            reinit="finish_previous",
            settings=wandb.Settings(
                console="off",
                silent=True,
                x_disable_stats=True,
                x_disable_machine_info=True,
                disable_git=True,
                save_code=False,
            ),
        )
        self.mode = mode

    @property
    def dir(self) -> str | None:
        return getattr(self.run, "dir", None)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        self.run.log(dict(metrics), step=int(step))

    def log_image(self, key: str, image: Any, step: int) -> None:
        img = self._wandb.Image(str(image) if isinstance(image, (str, Path)) else image)
        self.run.log({key: img}, step=int(step))

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


def _get(cfg: Any, key: str, default: Any = None) -> Any:
    try:
        v = cfg.get(key, default)
    except AttributeError:
        v = getattr(cfg, key, default)
    return default if v is None else v


def make_logger(
    cfg_logger: Any,
    cfg_full: Any,
    run_dir: str | Path,
    name: str | None = None,
    group: str | None = None,
) -> Logger:
    """Logger from the ``logger`` config group (``name``, ``mode``, ``project``, ``entity``,
    ``group``, ``tags``); ``cfg_full`` is logged as the run config (resolved to a plain dict)."""
    kind = _get(cfg_logger, "name", "none")
    if kind not in LOGGER_NAMES:
        raise ValueError(f"logger.name must be one of {list(LOGGER_NAMES)}, got {kind!r}")
    if kind == "none":
        return NullLogger()
    mode = os.environ.get("WANDB_MODE") or _get(cfg_logger, "mode", "offline")
    if mode not in WANDB_MODES + ("dryrun", "run"):
        raise ValueError(f"logger.mode must be one of {list(WANDB_MODES)}, got {mode!r}")
    config = cfg_full
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(cfg_full):
            config = OmegaConf.to_container(cfg_full, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra
        pass
    tags = _get(cfg_logger, "tags", None)
    return WandbLogger(
        project=_get(cfg_logger, "project", "scoresde"),
        run_dir=run_dir,
        config=config,
        mode=mode,
        name=_get(cfg_logger, "run_name", None) or name,
        group=_get(cfg_logger, "group", None) or group,
        entity=_get(cfg_logger, "entity", None),
        tags=list(tags) if tags else None,
        job_type=_get(cfg_logger, "job_type", "train"),
    )
