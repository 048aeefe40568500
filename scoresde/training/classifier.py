"""Train a time-dependent classifier p_t(y | x) on the perturbed marginals of an SDE.

Loss (Song et al. 2021, appendix I.1; Dhariwal & Nichol 2021):

    L = E_{t ~ U(eps, T), (x0, y) ~ data, z ~ N(0, I)} [ -log p_t(y | m(t) x0 + std(t) z) ]

``train_classifier(cfg, run_dir)`` is what ``python -m scoresde.train task=classifier`` runs: it reads
``cfg.data``, ``cfg.sde``, ``cfg.seed``, ``cfg.device`` and the classifier options in ``cfg.task``
(conf/task/classifier.yaml), and writes ``<run_dir>/checkpoints/last.pt`` (a scoresde checkpoint with
``kind: "classifier"`` and the network's constructor arguments) plus ``classifier_metrics.json``
(held-out accuracy at several times). :func:`load_classifier` gets it back for
``python -m scoresde.generate task=classifier_guidance classifier_ckpt=...``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scoresde.io.atomic import write_json_atomic
from scoresde.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scoresde.nets.classifier import NoisyClassifier
from scoresde.sde import SDE, batch_view

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
    """Mean cross-entropy of ``classifier(x_t, t)`` with x_t ~ p_{0t}(. | x0), t ~ U(eps, T); scalar."""
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
    """Adam on :func:`classifier_loss` for ``steps`` steps; returns the per-step losses.

    ``dataset`` has ``get_batch(idx) -> (x, y)`` (scoresde.data sets) or is a ``(x, y)`` pair of tensors.
    Batches and noise come from a generator seeded with ``seed``.
    """
    for name, v in (("steps", steps), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    get_batch, n = _batcher(dataset)
    device = torch.device(device)
    classifier.to(device).train()
    opt = torch.optim.Adam(classifier.parameters(), lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    losses: list[float] = []
    it = range(steps)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="classifier", leave=False)
    for step in it:
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g)
        x0, y = get_batch(idx)
        x0 = x0.to(device=device, dtype=torch.float32)
        loss = classifier_loss(classifier, sde, x0, y.to(device), eps=eps, generator=g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if not math.isfinite(losses[-1]):
            raise RuntimeError(f"classifier loss became {losses[-1]} at step {step}")
        if logger is not None and log_every and (step + 1) % log_every == 0:
            logger.log({"classifier/loss": sum(losses[-log_every:]) / log_every}, step=step + 1)
    classifier.eval()
    return losses


def _batcher(dataset: Any):
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2:
        x, y = (torch.as_tensor(v) for v in dataset)
        return (lambda idx: (x[idx], y[idx])), x.shape[0]
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch, len(dataset)
    raise TypeError("dataset must have get_batch(idx) -> (x, y) or be an (x, y) pair of tensors")


def _cfg_get(node: Any, key: str, default: Any = None) -> Any:
    if node is None:
        return default
    try:
        v = node.get(key, default)
    except AttributeError:
        v = getattr(node, key, default)
    return default if v is None else v


def train_classifier(cfg: Any, run_dir: str | Path) -> ClassifierResult:
    """Train the noisy classifier described by ``cfg`` (full training config) into ``run_dir``."""
    from omegaconf import OmegaConf

    from scoresde.io.runs import build_dataset, build_sde
    from scoresde.training.trainer import resolve_device

    start = time.perf_counter()
    run_dir = Path(run_dir)
    task = cfg.task
    torch.manual_seed(int(_cfg_get(cfg, "seed", 0)))
    threads = _cfg_get(cfg, "threads", None)
    if threads:
        torch.set_num_threads(int(threads))
    device = resolve_device(_cfg_get(cfg, "device", "cpu"))
    sde = build_sde(cfg.sde)
    train_set = build_dataset(cfg.data, "train")
    info = dict(train_set.info)
    num_classes = info.get("num_classes")
    if not num_classes or int(num_classes) < 2:
        raise ValueError(
            f"task=classifier needs a data set with >= 2 classes; data.name={cfg.data.name!r} has "
            f"num_classes={num_classes!r}"
        )
    net_kwargs = {k: int(_cfg_get(task, k)) for k in NET_KEYS if _cfg_get(task, k) is not None}
    clf = NoisyClassifier(info["shape"], int(num_classes), sde=sde, **net_kwargs)
    logger = None
    from scoresde.io.loggers import make_logger

    logger = (
        make_logger(cfg.logger, cfg, run_dir, name=f"classifier-{run_dir.name}")
        if "logger" in cfg
        else None
    )
    try:
        losses = fit_classifier(
            clf,
            sde,
            train_set,
            steps=int(_cfg_get(task, "steps", 1000)),
            batch_size=int(_cfg_get(task, "batch_size", 128)),
            lr=float(_cfg_get(task, "lr", 1e-3)),
            eps=float(_cfg_get(task, "eps", 1e-5)),
            seed=int(_cfg_get(cfg, "seed", 0)),
            device=device,
            log_every=int(_cfg_get(task, "log_every", 50)),
            logger=logger,
            progress=bool(_cfg_get(task, "progress", False)),
        )
        metrics = _evaluate(
            clf,
            sde,
            build_dataset(cfg.data, "test"),
            device,
            [float(v) for v in _cfg_get(task, "eval_times", [0.01, 0.25, 0.5, 0.75])],
            int(_cfg_get(task, "eval_n", 512)),
        )
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
    _write_json(run_dir / "classifier_metrics.json", metrics)
    print(f"classifier checkpoint: {ckpt}")
    print(
        "held-out accuracy: "
        + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith("acc"))
    )
    return ClassifierResult(clf, losses, ckpt, metrics, time.perf_counter() - start)


def _evaluate(clf, sde, test_set, device, times, n) -> dict[str, float]:
    get_batch, N = _batcher(test_set)
    idx = torch.arange(min(n, N))
    x0, y = get_batch(idx)
    g = torch.Generator().manual_seed(1234)
    return {
        f"acc_t{t:g}": noisy_accuracy(clf, sde, x0.to(device, torch.float32), y, t, g)
        for t in times
    }


def _write_json(path: Path, obj: Mapping[str, Any]) -> None:
    write_json_atomic(path, obj)


def load_classifier(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[NoisyClassifier, dict[str, Any]]:
    """Load a classifier checkpoint (a run directory or file) written by :func:`train_classifier`.

    Returns ``(classifier in eval mode with its SDE attached, checkpoint dict)``; the checkpoint's
    ``config["sde"]`` rebuilds the SDE it was trained on. Raises CheckpointError for score checkpoints.
    """
    from scoresde.io.runs import build_sde

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
