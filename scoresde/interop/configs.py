"""The Score SDE release's CIFAR-10 configs, as data, and their translation to a scoresde config.

``release_configs.json`` holds, for every continuous CIFAR-10 config of yang-song/score_sde_pytorch
whose network is ``ncsnpp`` (DDPM++ and NCSN++, VP / sub-VP / VE, normal and deep), the fields the
network, the SDE and the paper's sampler are built from (``model.*``, ``data.*``, ``training.sde``,
``training.continuous``, ``sampling.*``), copied from the release's ``configs/<name>.py`` on top of
``configs/default_cifar10_configs.py``.

:func:`scoresde_config` maps such a config onto scoresde's (``sde``, ``model``, ``data``,
``sampler``) so that the score equals the release's ``get_score_fn(sde, net, continuous=True)``:

- VP / sub-VP: the net sees the label 999 t (``label="scaled_t"``) and the score is
  ``-net / std(t)`` (``parameterization="eps"``) with the same std (sub-VP: 1 - exp(-int beta));
  scoresde evaluates it as ``sqrt(-expm1(.))``, which is the release's formula without its float32
  cancellation (1.2e-4 relative at t = 1e-3, 3e-6 at t = 0.1).
- VE: the net sees sigma(t) = sigma_min (sigma_max / sigma_min)^t (``label="sigma_t"``) and, with
  ``scale_by_sigma``, divides by it itself; the score is the net's output
  (``parameterization="score"``). The SDE (g(t), the prior N(0, sigma_max^2)) is the release's.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from omegaconf import OmegaConf

__all__ = ["RELEASE_CONFIGS", "net_kwargs", "release_config", "scoresde_config"]

RELEASE_CONFIGS: dict[str, dict[str, Any]] = json.loads(
    resources.files("scoresde.interop").joinpath("release_configs.json").read_text()
)

_SDES = {"vpsde": "vp", "subvpsde": "subvp", "vesde": "ve"}
# release config.model field -> NCSNpp argument (same name unless listed)
_NET_FIELDS = (
    "nf",
    "ch_mult",
    "num_res_blocks",
    "attn_resolutions",
    "dropout",
    "resamp_with_conv",
    "fir",
    "fir_kernel",
    "skip_rescale",
    "resblock_type",
    "progressive",
    "progressive_input",
    "progressive_combine",
    "embedding_type",
    "fourier_scale",
    "init_scale",
    "scale_by_sigma",
    "nonlinearity",
    "sigma_min",
    "sigma_max",
    "num_scales",
)
_FIXED = {"normalization": "GroupNorm", "attention_type": "ddpm", "conv_size": 3, "name": "ncsnpp"}


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def release_config(config: str | Mapping[str, Any]) -> dict[str, Any]:
    """A release config as a plain dict: a shipped name (see :data:`RELEASE_CONFIGS`) or a mapping
    with ``model``, ``data`` and ``training.sde`` (as ``config.to_dict()`` of the release gives)."""
    if isinstance(config, str):
        if config not in RELEASE_CONFIGS:
            raise ValueError(f"config must be one of {sorted(RELEASE_CONFIGS)}, got {config!r}")
        return copy.deepcopy(RELEASE_CONFIGS[config])
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a config name or a mapping, got {type(config).__name__}")
    if OmegaConf.is_config(config):
        config = OmegaConf.to_container(config, resolve=True)
    cfg = _plain(config)
    for section in ("model", "data", "training"):
        if not isinstance(cfg.get(section), Mapping):
            raise TypeError(f"config needs a '{section}' mapping (the release's config.{section})")
    sde = cfg["training"].get("sde")
    if sde not in _SDES:
        raise ValueError(f"config training.sde must be one of {sorted(_SDES)}, got {sde!r}")
    if cfg["training"].get("continuous", True) is not True:
        raise ValueError("config training.continuous must be true: only continuous-time models")
    model = cfg["model"]
    for key, val in _FIXED.items():
        if model.get(key, val) != val:
            raise ValueError(f"config model.{key} must be {val!r}, got {model.get(key)!r}")
    missing = [k for k in (*_NET_FIELDS, "conditional") if k not in model]
    missing += [
        f"data.{k}" for k in ("image_size", "num_channels", "centered") if k not in cfg["data"]
    ]
    if missing:
        raise ValueError(
            f"config lacks fields {['model.' + k if '.' not in k else k for k in missing]}"
        )
    return cfg


def net_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments of :class:`~scoresde.nets.NCSNpp` for a release config.

    See :func:`release_config`.
    """
    model, data = cfg["model"], cfg["data"]
    kw = {k: model[k] for k in _NET_FIELDS}
    kw["noise_conditional"] = bool(model["conditional"])
    kw["centered"] = bool(data["centered"])
    kw["label"] = "sigma_t" if cfg["training"]["sde"] == "vesde" else "scaled_t"
    kw["time_scale"] = 999.0  # the release's continuous VP / sub-VP label: labels = t * 999
    return kw


def scoresde_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The scoresde config of a release config.

    Its nodes are ``sde``, ``model``, ``data``, ``sampler`` and ``source``.
    """
    model, data = cfg["model"], cfg["data"]
    sde_name = _SDES[cfg["training"]["sde"]]
    if sde_name == "ve":
        sde = {"sigma_min": float(model["sigma_min"]), "sigma_max": float(model["sigma_max"])}
    else:
        sde = {"beta_min": float(model["beta_min"]), "beta_max": float(model["beta_max"])}
    sde = {"name": sde_name, **sde, "N": int(model["num_scales"])}
    net = {
        "name": "ncsnpp",
        "parameterization": "score" if sde_name == "ve" else "eps",
        "time_input": "t",
        "conditional": False,
        "num_classes": None,
        **net_kwargs(cfg),
    }
    if data.get("dataset", "CIFAR10") != "CIFAR10":
        raise ValueError(f"config data.dataset must be 'CIFAR10', got {data.get('dataset')!r}")
    data_cfg = {
        "name": "cifar10",
        "root": "data/cifar10",
        "data_range": [-1.0, 1.0] if data["centered"] else [0.0, 1.0],
        "random_flip": bool(data.get("random_flip", True)),
    }
    s = cfg.get("sampling") or {}
    sampler = {
        "method": "pc",
        "steps": int(model["num_scales"]),
        "predictor": s.get("predictor", "euler_maruyama"),
        "corrector": s.get("corrector", "none"),
        "snr": float(s.get("snr", 0.16)),
        "corrector_steps": int(s.get("n_steps_each", 1)),
    }
    source = {k: cfg[k] for k in ("reference_config",) if k in cfg}
    return {"sde": sde, "model": net, "data": data_cfg, "sampler": sampler, "source": source}
