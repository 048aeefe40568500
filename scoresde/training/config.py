"""Typed training configs: the one place the defaults and types of ``training`` and the train
tasks live.

The dataclasses below are Hydra structured configs registered in the ConfigStore
(:func:`register_configs`, run when ``scoresde.conf`` is imported); ``conf/training/*.yaml`` and the
train tasks' YAML only list them as their schema and hold presets. Composing therefore rejects an
unknown key (``training.lr_decay=1``) or a wrong type (``training.steps=abc``) naming the key, and
:func:`training_options` does the same for a config built by hand (``OmegaConf.create``).

Loss options: ``weighting``, ``importance_sampling`` and ``eps`` belong to ``loss=dsm`` only; left
``null`` they take :func:`scoresde.losses.dsm_loss`'s defaults (sigma2, false, 1e-5), and setting
one for ``loss=ddpm`` or ``loss=ncsn`` is an error (never silently dropped).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from scoresde import losses
from scoresde.checks import check_size

__all__ = [
    "LOSSES",
    "LOSS_FUNCTIONS",
    "LOSS_OPTIONS",
    "SCHEMA_GROUP",
    "ClassifierTaskConfig",
    "LikelihoodOptions",
    "ScoreTaskConfig",
    "TrainingConfig",
    "register_configs",
    "task_options",
    "training_options",
]

WEIGHTINGS = ("sigma2", "likelihood")
REDUCES = ("mean", "sum")
# the losses by name, and the options of one loss only (null: that loss's own default; ``reduce``
# is common to all)
LOSS_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "dsm": losses.dsm_loss,
    "ddpm": losses.ddpm_loss,
    "ncsn": losses.ncsn_loss,
}
LOSS_OPTIONS: dict[str, tuple[str, ...]] = {
    "dsm": ("weighting", "importance_sampling", "eps"),
    "ddpm": (),
    "ncsn": (),
}
LOSSES = tuple(LOSS_FUNCTIONS)
SCHEMA_GROUP = "schema"  # ConfigStore group of the schemas (not a group a user picks from)


@dataclass
class LikelihoodOptions:
    """Options of :func:`scoresde.likelihood.log_likelihood` for the periodic / final likelihood."""

    method: str = "dopri5"
    rtol: float = 1e-4
    atol: float = 1e-4
    trace: str = "rademacher"
    eps: float = 1e-5
    probes: int | None = None  # None: the trace's default (scoresde.likelihood.trace)


@dataclass
class TrainingConfig:
    """``cfg.training``: the optimisation, the loss, and the run's periodic work (0 turns one
    off)."""

    steps: int = 8000  # optimizer steps (digits MLP: FD-digits 9.8 at 4000 steps, 1.9 at 8000)
    batch_size: int = 128  # global batch (split over DDP ranks x grad_accum)
    grad_accum: int = 1  # micro-batches per step
    lr: float = 2.0e-3  # Adam learning rate after warmup
    warmup: int = 200  # linear warmup: lr * min(1, step / warmup)
    grad_clip: float | None = 1.0  # global gradient-norm clip (0 or null: off)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    adam_eps: float = 1.0e-8
    weight_decay: float = 0.0
    ema_decay: float = 0.999  # EMA of the weights, used for sampling and evaluation
    ema_warmup: bool = True  # decay_n = min(ema_decay, (1 + n) / (10 + n)) after n updates
    loss: str = "dsm"  # dsm (continuous) | ddpm (VP chain) | ncsn (VE chain)
    weighting: str | None = None  # dsm: sigma2 | likelihood (Song, Durkan et al. 2021)
    importance_sampling: bool | None = None  # dsm: t ~ g^2 / std^2 (likelihood weighting)
    reduce: str = "mean"  # mean | sum over data dimensions
    eps: float | None = None  # dsm: t ~ U(eps, 1)
    label_dropout: float = 0.0  # P(null label) for classifier-free guidance
    bf16: bool = False  # bf16 autocast (CUDA only)
    compile: bool = False  # torch.compile the model (CUDA only)
    channels_last: Any = "auto"  # auto: images on CUDA | true | false
    progress: bool = True  # tqdm bar with loss and it/s
    plot: bool = True  # loss_curve.png at the end (and at snapshots)
    log_every: int = 50  # loss / lr / grad norm to the logger + metrics.jsonl
    checkpoint_every: int = 1000  # checkpoints/last.pt
    snapshot_every: int = 2000  # checkpoints/step_XXXXXX.pt (kept)
    eval_every: int = 500  # eval/ema_loss on a fixed held-out batch
    eval_n: int = 256
    sample_every: int = 1000  # samples/step_XXXXXX.png with cfg.sampler and the EMA model
    sample_n: int = 64
    likelihood_every: int = 0  # held-out likelihood during training
    likelihood_n: int = 64
    final_sample_n: int = 100  # samples/final.png
    final_likelihood_n: int = 297  # held-out points for likelihood.json (bits/dim for images)
    likelihood: LikelihoodOptions = field(default_factory=LikelihoodOptions)
    resume: str | None = None  # auto: <run_dir>/checkpoints/last.pt | a run dir or file | null


@dataclass
class ScoreTaskConfig:
    """``task=score``: train the score model with ``cfg.training``."""

    name: str = "score"


@dataclass
class ClassifierTaskConfig:
    """``task=classifier``: a time-dependent classifier p_t(y | x) for classifier guidance."""

    name: str = "classifier"
    steps: int = 2000  # Adam steps
    batch_size: int = 128
    lr: float = 1.0e-3
    eps: float = 1.0e-5  # t ~ U(eps, T)
    hidden: int = 128  # MLP width (vector data)
    num_blocks: int = 2  # residual MLP blocks (vector data)
    channels: int = 32  # conv width (image data; stages 1x, 2x, 2x)
    embed_dim: int = 64  # time embedding
    log_every: int = 50
    progress: bool = True
    eval_n: int = 512  # held-out points for the accuracy at eval_times
    eval_times: list[float] = field(default_factory=lambda: [0.01, 0.25, 0.5, 0.75])


TASKS: dict[str, type] = {"score": ScoreTaskConfig, "classifier": ClassifierTaskConfig}


def register_configs() -> None:
    """Store the schemas ``schema/training`` and ``schema/train_task/<task>`` (the YAML presets
    select them with ``- /schema/training@_here_``)."""
    cs = ConfigStore.instance()
    cs.store(group=SCHEMA_GROUP, name="training", node=TrainingConfig)
    for name, node in TASKS.items():
        cs.store(group=f"{SCHEMA_GROUP}/train_task", name=name, node=node)


def _typed(schema: type, node: Any, where: str):
    """``node`` merged onto ``schema``'s defaults, as a dataclass; unknown keys / bad types
    raise."""
    if isinstance(node, schema):
        return node
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node if node is not None else {})
        return OmegaConf.to_object(merged)
    except ConfigKeyError as e:
        key = str(getattr(e, "full_key", None) or getattr(e, "key", None) or e)
        parent = key.rpartition(".")[0]
        node = OmegaConf.structured(schema)
        node = OmegaConf.select(node, parent) if parent else node
        valid = sorted(node.keys()) if isinstance(node, DictConfig) else []
        raise ValueError(
            f"{where}.{key} is not an option of {where}{'.' + parent if parent else ''}; "
            f"valid keys: {valid}"
        ) from e
    except ValidationError as e:
        key = getattr(e, "full_key", None) or getattr(e, "key", None)
        raise ValueError(f"{where}.{key}: {str(e).splitlines()[0]}") from e


def training_options(node: DictConfig | dict | TrainingConfig | None) -> TrainingConfig:
    """``cfg.training`` as a checked :class:`TrainingConfig` (ValueError names the bad key)."""
    t: TrainingConfig = _typed(TrainingConfig, node, "training")
    _check_training(t)
    return t


def task_options(node: Any) -> ScoreTaskConfig | ClassifierTaskConfig:
    """``cfg.task`` of a train run as its dataclass (``name`` picks it; default ``score``)."""
    name = (node or {}).get("name", "score") if node is not None else "score"
    if name not in TASKS:
        raise ValueError(f"task.name must be one of {sorted(TASKS)} for training, got {name!r}")
    task = _typed(TASKS[name], node, "task")
    if isinstance(task, ClassifierTaskConfig):
        _check_ints(task, "task", ("steps", "batch_size", "eval_n", "hidden", "num_blocks"), 1)
        _check_ints(task, "task", ("channels", "embed_dim"), 1)
        _check_ints(task, "task", ("log_every",), 0)
        _check(task.lr > 0, f"task.lr must be > 0, got {task.lr!r}")
        _check(0 < task.eps < 1, f"task.eps must lie in (0, 1), got {task.eps!r}")
        _check(
            len(task.eval_times) > 0 and all(0 <= v <= 1 for v in task.eval_times),
            f"task.eval_times must be times in [0, 1], got {task.eval_times!r}",
        )
    return task


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def _check_ints(node: Any, where: str, keys: tuple[str, ...], minimum: int, note: str = "") -> None:
    for key in keys:
        check_size(f"{where}.{key}", getattr(node, key), minimum, note)


def _check_training(t: TrainingConfig) -> None:
    _check_ints(t, "training", ("steps", "batch_size", "grad_accum"), 1)
    _check(t.lr > 0, f"training.lr must be > 0, got {t.lr!r}")
    _check(t.warmup >= 0, f"training.warmup must be >= 0, got {t.warmup!r}")
    _check(
        t.grad_clip is None or t.grad_clip >= 0,
        f"training.grad_clip must be >= 0 (0 or null: off), got {t.grad_clip!r}",
    )
    _check(len(t.betas) == 2, f"training.betas must be two numbers, got {t.betas!r}")
    _check(0.0 <= t.ema_decay < 1.0, f"training.ema_decay must be in [0, 1), got {t.ema_decay!r}")
    _check(t.loss in LOSSES, f"training.loss must be one of {list(LOSSES)}, got {t.loss!r}")
    _check(t.reduce in REDUCES, f"training.reduce must be one of {list(REDUCES)}, got {t.reduce!r}")
    for loss, keys in LOSS_OPTIONS.items():
        for key in keys if loss != t.loss else ():
            _check(
                getattr(t, key) is None,
                f"training.{key} is an option of training.loss={loss} only; remove it for "
                f"training.loss={t.loss} (got training.{key}={getattr(t, key)!r})",
            )
    _check(
        t.weighting is None or t.weighting in WEIGHTINGS,
        f"training.weighting must be one of {list(WEIGHTINGS)}, got {t.weighting!r}",
    )
    _check(t.eps is None or 0.0 < t.eps < 1.0, f"training.eps must lie in (0, 1), got {t.eps!r}")
    _check(
        0.0 <= t.label_dropout <= 1.0,
        f"training.label_dropout must be in [0, 1], got {t.label_dropout!r}",
    )
    _check(
        t.channels_last in (True, False, "auto"),
        f"training.channels_last must be auto, true or false, got {t.channels_last!r}",
    )
    cadences = ("log_every", "checkpoint_every", "snapshot_every", "sample_every")
    _check_ints(t, "training", (*cadences, "likelihood_every", "eval_every"), 0, " (0: off)")
    _check_ints(t, "training", ("final_sample_n", "final_likelihood_n"), 0, " (0: off)")
    for size, every in (
        ("eval_n", "eval_every"),
        ("sample_n", "sample_every"),
        ("likelihood_n", "likelihood_every"),
    ):
        if getattr(t, every) != 0:
            check_size(f"training.{size}", getattr(t, size), 1, f" when training.{every} > 0")


def loss_options(t: TrainingConfig) -> dict[str, Any]:
    """Keyword arguments of the chosen loss: ``reduce`` and its own options that are set."""
    out: dict[str, Any] = {"reduce": t.reduce}
    out.update({k: getattr(t, k) for k in LOSS_OPTIONS[t.loss] if getattr(t, k) is not None})
    return out
