"""Builders from config nodes, and :func:`load_run`.

:func:`load_run` gets a trained model back from a run directory.

Config nodes are plain mappings (an OmegaConf ``DictConfig`` or a dict):

- ``sde``: ``name`` in {vp, subvp, ve} plus that SDE's constructor arguments
  (``beta_min``, ``beta_max``, ``N`` | ``sigma_min``, ``sigma_max``, ``N``).
- ``model``: ``name`` (see :func:`scoresde.nets.build_net`), ``parameterization``
  ("eps"|"score"|"score_scaled"), ``time_input`` ("auto"|"t"|"log_sigma"), ``conditional``
  (label conditioning; ``num_classes`` from the data when null); all other keys are passed to
  the network constructor.
- ``data``: ``name`` plus reader options (see :func:`scoresde.data.get_dataset`).

``load_run(path)`` accepts a run directory or a checkpoint file and returns a :class:`Run`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from scoresde.data import dataset_from_config
from scoresde.io.checkpoint import CheckpointError, find_checkpoint, load_checkpoint
from scoresde.nets import build_net
from scoresde.score import ScoreModel
from scoresde.sde import SDE, VESDE, VPSDE, SubVPSDE

__all__ = [
    "MODEL_RESERVED_KEYS",
    "SDES",
    "Run",
    "build_dataset",
    "build_net_from_config",
    "build_score_model",
    "build_sde",
    "load_run",
]

SDES = {"vp": VPSDE, "subvp": SubVPSDE, "ve": VESDE}
MODEL_RESERVED_KEYS = ("name", "parameterization", "time_input", "conditional", "num_classes")


def _plain(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if OmegaConf.is_config(cfg):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def build_sde(cfg_sde: Mapping[str, Any]) -> SDE:
    """SDE from ``cfg.sde``: ``{name: vp|subvp|ve, **constructor kwargs}``."""
    c = _plain(cfg_sde)
    name = c.pop("name", None)
    if name not in SDES:
        raise ValueError(f"sde.name must be one of {sorted(SDES)}, got {name!r}")
    try:
        return SDES[name](**c)
    except TypeError as e:
        raise ValueError(f"bad sde options for {name!r}: {e}") from e


def build_dataset(cfg_data: Mapping[str, Any], split: str = "train"):
    """Data set from ``cfg.data`` for ``split``; has ``.info`` (shape, levels, data_range, ...)."""
    return dataset_from_config(_plain(cfg_data), split)


def _num_classes(cfg_model: dict[str, Any], data_info: Mapping[str, Any]) -> int | None:
    if not cfg_model.get("conditional", False):
        return None
    n = cfg_model.get("num_classes") or data_info.get("num_classes")
    if not n or int(n) < 1:
        raise ValueError("model.conditional=true needs model.num_classes or a data set with labels")
    return int(n)


def build_net_from_config(
    cfg_model: Mapping[str, Any], data_info: Mapping[str, Any]
) -> torch.nn.Module:
    """Network from ``cfg.model`` for data of shape ``data_info["shape"]``."""
    c = _plain(cfg_model)
    name = c.get("name")
    kwargs = {k: v for k, v in c.items() if k not in MODEL_RESERVED_KEYS}
    for k, v in kwargs.items():
        if isinstance(v, list):
            kwargs[k] = tuple(v)
    if kwargs.get("centered") == "auto":  # NCSN++ nets: data in [-1, 1] or [0, 1]
        kwargs["centered"] = float((data_info.get("data_range") or (-1.0, 1.0))[0]) < 0
    return build_net(
        name, tuple(data_info["shape"]), num_classes=_num_classes(c, data_info), **kwargs
    )


def build_score_model(cfg: Mapping[str, Any], data_info: Mapping[str, Any], sde: SDE | None = None):
    """``ScoreModel(net, sde, parameterization)`` from the full config.

    Reads ``cfg.model`` and ``cfg.sde``.
    """
    sde = sde if sde is not None else build_sde(cfg["sde"])
    net = build_net_from_config(cfg["model"], data_info)
    c = _plain(cfg["model"])
    return ScoreModel(
        net,
        sde,
        parameterization=c.get("parameterization", "eps"),
        time_input=c.get("time_input", "auto"),
    )


@dataclass
class Run:
    """A trained run: config, SDE, EMA (or raw) score model in eval mode, data description."""

    cfg: DictConfig
    sde: SDE
    model: torch.nn.Module
    data_info: dict[str, Any]
    step: int
    run_dir: Path | None
    checkpoint: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def dataset(self, split: str = "test"):
        """The run's data set (``(x, y)`` in model range) for ``split``."""
        return build_dataset(self.cfg.data, split)

    def score_fn(self, y=None):
        """``score_fn(x, t)`` of the model (label ``y`` for conditional models)."""
        return self.model.score_fn(y)


def load_run(ckpt: str | Path, device: str | torch.device = "cpu", use_ema: bool = True) -> Run:
    """Load a run directory or checkpoint file written by ``python -m scoresde.train``.

    Returns a :class:`Run` whose ``.model`` holds the EMA weights (``use_ema=True``) in eval mode.
    Raises :class:`~scoresde.io.checkpoint.CheckpointError` for missing/corrupt/incompatible files.
    """
    path = find_checkpoint(ckpt)
    state = load_checkpoint(path, map_location="cpu")
    cfg = OmegaConf.create(state["config"])
    data_info = dict(state.get("data_info") or {})
    if "shape" not in data_info:
        raise CheckpointError(f"{path} lacks data_info['shape']")
    sde = build_sde(cfg.sde)
    model = build_score_model(cfg, data_info, sde)
    weights = state["ema"] if use_ema and state.get("ema") is not None else state["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the model built from its config: {e}"
        ) from e
    model.to(device).eval()
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
    return Run(
        cfg=cfg,
        sde=sde,
        model=model,
        data_info=data_info,
        step=int(state["step"]),
        run_dir=run_dir,
        checkpoint=path,
    )
