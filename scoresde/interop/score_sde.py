"""Load the Score SDE release's checkpoints (yang-song/score_sde_pytorch) into scoresde.

A release checkpoint (``run_lib.py`` / ``utils.save_checkpoint``) is
``{"optimizer", "model", "ema": {"decay", "num_updates", "shadow_params"}, "step"}``; ``model`` is
the state dict of ``ncsnpp.NCSNpp`` inside ``torch.nn.DataParallel`` (keys ``module.*``: the
``sigmas`` buffer and ``all_modules.<i>.<param>``), ``shadow_params`` the EMA weights as a list in
the order of ``model.parameters()`` restricted to ``requires_grad`` ones (the Fourier ``W`` is
frozen, so it is not in the list and keeps its ``model`` value).

:func:`convert_score_sde` maps every tensor onto :class:`~scoresde.nets.NCSNpp` through
:meth:`~scoresde.nets.NCSNpp.release_module_names` and checks that each key of the file is used
exactly once (a missing, unexpected or mis-shaped key, or a ``sigmas`` buffer that does not match
the config, is a :class:`~scoresde.io.checkpoint.CheckpointError` naming it). The optimizer state
is not converted (scoresde training starts its own). :func:`load_score_sde` returns the same
:class:`~scoresde.io.runs.Run` as :func:`~scoresde.io.runs.load_run`; :func:`write_run` writes a
scoresde run directory that ``load_run``, ``generate``, ``likelihood`` and ``evaluate`` read.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from scoresde.interop.configs import release_config, scoresde_config
from scoresde.io.atomic import write_json_atomic, write_text_atomic
from scoresde.io.checkpoint import FORMAT, CheckpointError, save_checkpoint
from scoresde.io.runs import Run, build_net_from_config, build_score_model, build_sde
from scoresde.nets.ncsnpp_layers import release_sigmas

__all__ = ["Converted", "convert_score_sde", "load_score_sde", "release_key_map", "write_run"]

PathLike = str | os.PathLike


@dataclass
class Converted:
    """A release checkpoint in scoresde form: config, data description, net state dicts."""

    cfg: dict[str, Any]
    data_info: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    step: int
    checkpoint: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _read(path: PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"release checkpoint {p} does not exist")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"refusing to load {p}: it is not loadable with weights_only=True (it holds objects "
            f"other than tensors and plain containers, which could run code): {e}"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(
            f"corrupt or unreadable checkpoint {p}: {type(e).__name__}: {e}"
        ) from e
    if not isinstance(state, dict) or not isinstance(state.get("model"), Mapping):
        raise CheckpointError(f"{p} is not a Score SDE release checkpoint (no 'model' state dict)")
    return state


def release_key_map(net: torch.nn.Module) -> dict[str, str]:
    """Release state-dict key (without ``module.``) -> key of ``net``, in the release's order."""
    keys = {"sigmas": "sigmas"}
    for i, path in enumerate(net.release_module_names()):
        for name in net.get_submodule(path).state_dict():
            keys[f"all_modules.{i}.{name}"] = f"{path}.{name}"
    return keys


def _strip_prefix(sd: Mapping[str, Any], where: str) -> dict[str, Any]:
    prefixed = [k.startswith("module.") for k in sd]
    if any(prefixed) and not all(prefixed):
        odd = next(k for k, p in zip(sd, prefixed) if not p)
        raise CheckpointError(f"{where}: key {odd!r} lacks the 'module.' prefix of the others")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _map_model(
    net: torch.nn.Module, sd: Mapping[str, Any], where: str, sigmas: torch.Tensor
) -> dict[str, torch.Tensor]:
    keymap, own = release_key_map(net), net.state_dict()
    src = _strip_prefix(sd, where)
    missing = [k for k in keymap if k not in src]
    unexpected = [k for k in src if k not in keymap]
    if missing or unexpected:
        parts = [f"missing key 'module.{k}'" for k in missing[:5]]
        parts += [f"unexpected key 'module.{k}'" for k in unexpected[:5]]
        more = len(missing) + len(unexpected) - len(parts)
        raise CheckpointError(
            f"{where} does not fit the config's network: {'; '.join(parts)}"
            + (f" (and {more} more)" if more > 0 else "")
        )
    out = {}
    for rk, k in keymap.items():
        v = src[rk]
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(own[k].shape):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise CheckpointError(
                f"{where}: key 'module.{rk}' has shape {got}, the config's network needs "
                f"{tuple(own[k].shape)}"
            )
        out[k] = v.to(own[k].dtype)
    if not torch.allclose(out["sigmas"].double(), sigmas.double(), rtol=1e-6, atol=0.0):
        raise CheckpointError(
            f"{where}: buffer 'module.sigmas' does not match the config's model.sigma_min / "
            "sigma_max / num_scales (wrong config for this checkpoint?)"
        )
    return out


def _map_ema(net: torch.nn.Module, model_sd: dict, ema: Any, where: str) -> dict[str, torch.Tensor]:
    shadow = ema.get("shadow_params") if isinstance(ema, Mapping) else None
    if not isinstance(shadow, list | tuple):
        raise CheckpointError(f"{where}: 'ema' lacks the list 'shadow_params'")
    params = dict(net.named_parameters())
    release = {k: rk for rk, k in release_key_map(net).items()}
    order = [k for k in release if k in params]
    trainable = [k for k in order if params[k].requires_grad]
    if len(shadow) == len(trainable):
        names = trainable
    elif len(shadow) == len(order):
        names = order
    else:
        raise CheckpointError(
            f"{where}: ema.shadow_params has {len(shadow)} tensors; the config's network has "
            f"{len(trainable)} trainable parameters ({len(order)} in all)"
        )
    out = dict(model_sd)  # buffers and frozen parameters keep the model's values
    for i, (k, v) in enumerate(zip(names, shadow)):
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != tuple(params[k].shape):
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise CheckpointError(
                f"{where}: ema.shadow_params[{i}] (parameter 'module.{release[k]}', ours {k!r}) "
                f"has shape {got}, "
                f"expected {tuple(params[k].shape)}"
            )
        out[k] = v.to(params[k].dtype)
    return out


def convert_score_sde(checkpoint: PathLike, config: str | Mapping[str, Any]) -> Converted:
    """Read a release checkpoint with ``weights_only=True`` and map it onto scoresde.

    See the module docstring.
    """
    rcfg = release_config(config)
    cfg = scoresde_config(rcfg)
    C, S = int(rcfg["data"]["num_channels"]), int(rcfg["data"]["image_size"])
    data_info = {
        "name": "cifar10",
        "kind": "image",
        "shape": [C, S, S],
        "levels": 256,
        "data_range": list(cfg["data"]["data_range"]),
        "num_classes": 10,
    }
    state = _read(checkpoint)
    with torch.device("meta"):  # shapes and names only; no memory, no initialisation cost
        net = build_net_from_config(cfg["model"], data_info)
    where = str(checkpoint)
    model = _map_model(
        net,
        state["model"],
        where,
        release_sigmas(*(cfg["model"][k] for k in ("sigma_min", "sigma_max", "num_scales"))),
    )
    ema = _map_ema(net, model, state["ema"], where) if state.get("ema") is not None else None
    extra = {"release_config": rcfg}
    if isinstance(state.get("ema"), Mapping):
        extra["ema_decay"] = state["ema"].get("decay")
        extra["ema_num_updates"] = state["ema"].get("num_updates")
    return Converted(cfg, data_info, model, ema, int(state.get("step", 0)), Path(checkpoint), extra)


def load_score_sde(
    checkpoint: PathLike,
    config: str | Mapping[str, Any],
    use_ema: bool = True,
    device: str | torch.device = "cpu",
) -> Run:
    """A release checkpoint as a :class:`~scoresde.io.runs.Run` (EMA weights by default, eval mode).

    ``config``: a shipped config name (``"vp/cifar10_ddpmpp_continuous"``, ...; see
    :data:`~scoresde.interop.configs.RELEASE_CONFIGS`) or a mapping with the release's ``model``,
    ``data`` and ``training.sde`` fields. ``run.score_fn()(x, t)`` is the release's
    ``get_score_fn(sde, net, train=False, continuous=True)(x, t)``.
    """
    c = convert_score_sde(checkpoint, config)
    if use_ema and c.ema is None:
        raise CheckpointError(f"{checkpoint} has no EMA weights; pass use_ema=False")
    cfg = OmegaConf.create(c.cfg)
    sde = build_sde(cfg.sde)
    model = build_score_model(cfg, c.data_info, sde)
    model.net.load_state_dict(c.ema if use_ema else c.model)
    model.to(device).eval()
    return Run(cfg, sde, model, dict(c.data_info), c.step, None, c.checkpoint, c.extra)


def write_run(c: Converted, out_dir: PathLike) -> Path:
    """Write a scoresde run directory.

    It holds ``checkpoints/last.pt``, ``config.yaml`` and ``data_info.json``.
    """
    out = Path(out_dir)
    state = {
        "format": FORMAT,
        "model": {f"net.{k}": v for k, v in c.model.items()},
        "ema": None if c.ema is None else {f"net.{k}": v for k, v in c.ema.items()},
        "optimizer": None,
        "step": c.step,
        "rng": None,
        "config": c.cfg,
        "data_info": c.data_info,
        "converted_from": {"checkpoint": str(c.checkpoint), **c.cfg.get("source", {})},
    }
    path = save_checkpoint(out / "checkpoints" / "last.pt", state)
    write_text_atomic(out / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(c.cfg)))
    write_json_atomic(out / "data_info.json", c.data_info)
    return path
