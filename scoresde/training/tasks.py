"""The train tasks behind ``python -m scoresde.train``: ``task=score`` (the score model,
:func:`scoresde.training.trainer.train`) or ``task=classifier`` (a noisy classifier for guidance,
:func:`scoresde.training.classifier.train_classifier`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from scoresde.training.classifier import ClassifierResult, train_classifier
from scoresde.training.config import task_options
from scoresde.training.trainer import TrainResult, train

__all__ = ["run", "summary"]


def run(
    cfg: DictConfig,
    run_dir: str | Path,
    *,
    name: str | None = None,
    group: str | None = None,
    report: Callable[[str], Any] | None = print,
) -> TrainResult | ClassifierResult:
    """Run the train task ``cfg.task.name`` into ``run_dir``; rank 0 reports a short summary."""
    task = task_options(cfg.get("task"))
    if task.name == "classifier":
        result: TrainResult | ClassifierResult = train_classifier(cfg, run_dir)
    else:
        result = train(cfg, run_dir, name=name, group=group)
    if report is not None and int(os.environ.get("RANK", "0")) == 0:
        for line in summary(result, Path(run_dir)):
            report(line)
    return result


def summary(result: TrainResult | ClassifierResult, run_dir: Path) -> list[str]:
    """Lines naming the run directory, the checkpoint and the final figures."""
    lines = [f"run directory: {run_dir.resolve()}"]
    if result.checkpoint is not None:
        lines.append(f"checkpoint: {result.checkpoint}")
    if isinstance(result, ClassifierResult):
        accs = ", ".join(f"{k}={v:.3f}" for k, v in result.metrics.items() if k.startswith("acc"))
        return [*lines, f"held-out accuracy: {accs}"]
    if result.losses:
        tail = result.losses[-50:]
        lines.append(f"final loss (mean of last 50 steps): {sum(tail) / len(tail):.4f}")
    lk = result.likelihood
    if lk:
        if "bpd" in lk:
            lines.append(
                f"held-out likelihood: {lk['bpd']:.4f} bits/dim "
                f"(+- {lk.get('bpd_stderr', float('nan')):.4f}, n={lk['n']}, nfe={lk['nfe']})"
            )
        else:
            lines.append(
                f"held-out likelihood: {lk['nll_nats_per_dim']:.4f} nats/dim NLL "
                f"(prior: {lk['prior_nll_nats_per_dim']:.4f}, n={lk['n']}, nfe={lk['nfe']})"
            )
        lines.append(f"written: {run_dir / 'likelihood.json'}")
    return lines
