"""Train a time-dependent classifier p_t(y | x) on the perturbed marginals of an SDE.

Loss (Song et al. 2021, appendix I.1; Dhariwal & Nichol 2021):

    L = E_{t ~ U(eps, T), (x0, y) ~ data, z ~ N(0, I)} [ -log p_t(y | m(t) x0 + std(t) z) ]

``train_classifier(cfg, run_dir)`` is what ``python -m scoresde.train task=classifier`` runs: it
reads ``cfg.data``, ``cfg.sde``, ``cfg.seed``, ``cfg.device`` and the classifier options in
``cfg.task`` (conf/task/classifier.yaml), and writes ``<run_dir>/checkpoints/last.pt`` (a scoresde
checkpoint with ``kind: "classifier"`` and the network's constructor arguments) plus
``classifier_metrics.json``
(held-out accuracy at several times). :func:`load_classifier` gets it back for
``python -m scoresde.generate task=classifier_guidance classifier_ckpt=...``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import Tensor

from scoresde.io.atomic import write_json_atomic
from scoresde.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scoresde.io.distributed import resolve_device
from scoresde.io.loggers import make_logger
from scoresde.io.runs import build_dataset, build_sde
from scoresde.nets.classifier import NoisyClassifier
from scoresde.sde import SDE, batch_view
from scoresde.training.batches import EVAL, NOISE, DataOrder, dataset_size, get_batch, mix_seed
from scoresde.training.config import task_options
from scoresde.training.loop import Every, Loop, adam
from scoresde.training.setup import check_run_config
from scoresde.training.steplog import NonFiniteLossError

__all__ = [
    "ClassifierResult",
    "classifier_loss",
    "fit_classifier",
    "load_classifier",
    "noisy_accuracy",
    "train_classifier",
]

CLASSIFIER_KIND = "classifier"
NET_KEYS = ("hidden", "num_blocks", "channels", "embed_dim")


def classifier_loss(
    classifier: torch.nn.Module,
    sde: SDE,
    x0: Tensor,
    y: Tensor,
    *,
    eps: float = 1e-5,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Mean cross-entropy of ``classifier(x_t, t)`` with x_t ~ p_{0t}(. | x0), t ~ U(eps, T);
    scalar."""
    if x0.shape[0] != y.shape[0]:
        raise ValueError(
            f"x0 and y must have the same batch size, got {x0.shape[0]} and {y.shape[0]}"
        )
    if not 0.0 < eps < sde.T:
        raise ValueError(f"eps must lie in (0, T = {sde.T}), got {eps}")
    B = x0.shape[0]
    gdev = generator.device if generator is not None else x0.device
    t = eps + (sde.T - eps) * torch.rand(B, generator=generator, device=gdev, dtype=x0.dtype).to(
        x0.device
    )
    z = torch.randn(x0.shape, generator=generator, device=gdev, dtype=x0.dtype).to(x0.device)
    mean, std = sde.marginal_prob(x0, t)
    logits = classifier(mean + batch_view(std, x0) * z, t)
    return torch.nn.functional.cross_entropy(logits, y.long())


@torch.no_grad()
def noisy_accuracy(
    classifier: torch.nn.Module,
    sde: SDE,
    x0: Tensor,
    y: Tensor,
    t: float,
    generator: torch.Generator | None = None,
) -> float:
    """Accuracy of ``classifier`` on x_t ~ p_{0t}(. | x0) at a fixed time t."""
    tt = torch.full((x0.shape[0],), float(t), dtype=x0.dtype, device=x0.device)
    mean, std = sde.marginal_prob(x0, tt)
    z = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device="cpu").to(x0.device)
    pred = classifier(mean + batch_view(std, x0) * z, tt).argmax(1)
    return float((pred == y.to(pred.device)).double().mean())


@dataclass
class ClassifierResult:
    """What :func:`train_classifier` / :func:`fit_classifier` leave behind."""

    classifier: NoisyClassifier
    losses: list[float]
    checkpoint: Path | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def fit_classifier(
    classifier: NoisyClassifier,
    sde: SDE,
    dataset: Any,
    *,
    steps: int = 1000,
    batch_size: int = 128,
    lr: float = 1e-3,
    eps: float = 1e-5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    log_every: int = 0,
    logger: Any = None,
    progress: bool = False,
) -> list[float]:
    """Adam on :func:`classifier_loss` for ``steps`` steps on the shared training loop; returns the
    per-step losses.

    ``dataset`` has ``get_batch(idx) -> (x, y)`` (scoresde.data sets), items ``(x, y)``, or is a
    ``(x, y)`` pair of tensors. The batches (epoch-wise permutations) and the noise of step k are
    functions of ``(seed, k)`` (:mod:`scoresde.training.batches`).
    """
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    n = dataset_size(dataset)
    order = DataOrder(n, min(batch_size, n), int(seed))
    device = torch.device(device)
    classifier.to(device).train()
    opt = adam(classifier.parameters(), lr=lr)
    gen = torch.Generator()
    losses: list[float] = []

    def step(k: int) -> None:
        x0, y = get_batch(dataset, order.indices(k))
        x0 = x0.to(device=device, dtype=torch.float32)
        g = order.generator(gen, k, 0, NOISE)
        loss = classifier_loss(classifier, sde, x0, y.to(device), eps=eps, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise NonFiniteLossError(f"classifier loss became {losses[-1]} at step {k + 1}")

    def log(s: int) -> None:
        logger.log({"classifier/loss": sum(losses[-log_every:]) / log_every}, step=s)

    hooks = [Every(log_every, log)] if logger is not None else []
    Loop(step, hooks, progress=progress, desc="classifier").run(0, steps)
    classifier.eval()
    return losses


def train_classifier(cfg: Any, run_dir: str | Path) -> ClassifierResult:
    """Train the noisy classifier described by ``cfg`` (full training config) into ``run_dir``."""
    start = time.perf_counter()
    run_dir = Path(run_dir)
    task = task_options(cfg.task)
    if task.name != "classifier":
        raise ValueError(f"train_classifier needs task=classifier, got task.name={task.name!r}")
    check_run_config(cfg)
    seed = int(cfg.seed)
    torch.manual_seed(seed)
    device = resolve_device(cfg.device)
    sde = build_sde(cfg.sde)
    train_set = build_dataset(cfg.data, "train")
    info = dict(train_set.info)
    num_classes = info.get("num_classes")
    if not num_classes or int(num_classes) < 2:
        raise ValueError(
            f"task=classifier needs a data set with >= 2 classes; data.name={cfg.data.name!r} has "
            f"num_classes={num_classes!r}"
        )
    net_kwargs = {k: getattr(task, k) for k in NET_KEYS}
    clf = NoisyClassifier(info["shape"], int(num_classes), sde=sde, **net_kwargs)
    name = f"classifier-{run_dir.name}"
    logger = make_logger(cfg.logger, cfg, run_dir, name=name) if "logger" in cfg else None
    try:
        losses = fit_classifier(
            clf,
            sde,
            train_set,
            steps=task.steps,
            batch_size=task.batch_size,
            lr=task.lr,
            eps=task.eps,
            seed=seed,
            device=device,
            log_every=task.log_every,
            logger=logger,
            progress=task.progress,
        )
        test_set = build_dataset(cfg.data, "test")
        metrics = _evaluate(clf, sde, test_set, device, task.eval_times, task.eval_n, seed)
        metrics["final_loss"] = sum(losses[-50:]) / len(losses[-50:])
        if logger is not None:
            logger.log({f"classifier/{k}": v for k, v in metrics.items()}, step=len(losses))
    finally:
        if logger is not None:
            logger.finish()
    state = {
        "kind": CLASSIFIER_KIND,
        "model": {k: v.detach().cpu() for k, v in clf.state_dict().items()},
        "ema": None,
        "optimizer": None,
        "step": len(losses),
        "rng": torch.get_rng_state(),
        "config": OmegaConf.to_container(cfg, resolve=True)
        if OmegaConf.is_config(cfg)
        else dict(cfg),
        "data_info": info,
        "classifier": clf.config,
    }
    ckpt = save_checkpoint(run_dir / "checkpoints" / "last.pt", state)
    write_json_atomic(run_dir / "classifier_metrics.json", metrics)
    return ClassifierResult(clf, losses, ckpt, metrics, time.perf_counter() - start)


def _evaluate(clf, sde, test_set, device, times, n, seed) -> dict[str, float]:
    x0, y = get_batch(test_set, torch.arange(min(n, dataset_size(test_set))))
    g = torch.Generator().manual_seed(mix_seed(seed, EVAL))
    return {
        f"acc_t{t:g}": noisy_accuracy(clf, sde, x0.to(device, torch.float32), y, t, g)
        for t in times
    }


def load_classifier(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[NoisyClassifier, dict[str, Any]]:
    """Load a classifier checkpoint (a run directory or file) written by :func:`train_classifier`.

    Returns ``(classifier in eval mode with its SDE attached, checkpoint dict)``; the checkpoint's
    ``config["sde"]`` rebuilds the SDE it was trained on. Raises CheckpointError for score
    checkpoints.
    """
    state = load_checkpoint(path, map_location="cpu")
    if state.get("kind") != CLASSIFIER_KIND or "classifier" not in state:
        raise CheckpointError(
            f"{path} is not a classifier checkpoint (train one with "
            "python -m scoresde.train task=classifier)"
        )
    kw = dict(state["classifier"])
    sde = build_sde(state["config"]["sde"])
    clf = NoisyClassifier(kw.pop("data_shape"), int(kw.pop("num_classes")), sde=sde, **kw)
    try:
        clf.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: classifier weights do not fit its recorded architecture: {e}"
        ) from e
    return clf.to(device).eval(), state
