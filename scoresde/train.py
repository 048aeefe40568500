"""Hydra entry point: ``python -m scoresde.train [overrides]`` (configs in ``conf/`` = ``scoresde.conf``).

    python -m scoresde.train                                   # the main job (digits, small UNet)
    python -m scoresde.train experiment=toy2d logger=none device=cpu
    python -m scoresde.train -m sde=vp,subvp,ve seed=0,1       # sweep -> multirun/<date>/<time>/<n>
    torchrun --standalone --nproc_per_node=2 -m scoresde.train training.batch_size=128

Artifacts go to Hydra's output directory (``outputs/<date>/<time>`` or the sweep's sub-directory);
``task.name=classifier`` dispatches to :func:`scoresde.training.classifier.train_classifier`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from scoresde.cli import RunContext, run_command

__all__ = ["job_name_and_group", "main", "run"]


def job_name_and_group(hc: Any) -> tuple[str, str | None]:
    """wandb run name and group from the Hydra job: sweeps share one group (the sweep directory)."""
    overrides = hc.job.override_dirname or ""
    if hc.mode == RunMode.MULTIRUN:
        sweep = Path(str(hc.sweep.dir))
        group = f"{hc.job.name}-{sweep.parent.name}_{sweep.name}"
        name = f"{hc.job.num}:{overrides}" if overrides else f"{hc.job.name}-{hc.job.num}"
        return name, group
    run_dir = Path(hc.runtime.output_dir)
    name = overrides or f"{hc.job.name}-{run_dir.parent.name}_{run_dir.name}"
    return name, None


def run(cfg: DictConfig, run_dir: str | Path, name: str | None = None, group: str | None = None):
    """Dispatch on ``cfg.task.name``: ``score`` (this package's trainer) or ``classifier``."""
    task = cfg.task.name if "task" in cfg and cfg.task is not None else "score"
    if task == "classifier":
        from scoresde.training.classifier import train_classifier

        return train_classifier(cfg, Path(run_dir))
    if task != "score":
        raise ValueError(f"task.name must be 'score' or 'classifier', got {task!r}")
    from scoresde.training.trainer import train

    result = train(cfg, run_dir, name=name, group=group)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {Path(run_dir).resolve()}")
        if result.checkpoint is not None:
            print(f"checkpoint: {result.checkpoint}")
        if result.losses:
            print(
                f"final loss (mean of last 50 steps): {sum(result.losses[-50:]) / len(result.losses[-50:]):.4f}"
            )
        if result.likelihood:
            lk = result.likelihood
            if "bpd" in lk:
                print(
                    f"held-out likelihood: {lk['bpd']:.4f} bits/dim "
                    f"(+- {lk.get('bpd_stderr', float('nan')):.4f}, n={lk['n']}, nfe={lk['nfe']})"
                )
            else:
                print(
                    f"held-out likelihood: {lk['nll_nats_per_dim']:.4f} nats/dim NLL "
                    f"(prior: {lk['prior_nll_nats_per_dim']:.4f}, n={lk['n']}, nfe={lk['nfe']})"
                )
            print(f"written: {Path(run_dir) / 'likelihood.json'}")
    return result


def _train(cfg: DictConfig, ctx: RunContext):
    """One training job in the runner's run directory (wandb name / group from the Hydra job)."""
    name, group = job_name_and_group(HydraConfig.get())
    return run(cfg, ctx.out_dir, name=name, group=group)


def main(argv: list[str] | None = None) -> None:
    """``python -m scoresde.train``: :func:`run` through :func:`scoresde.cli.run_command`."""
    run_command("train", "config", _train, argv=argv)


if __name__ == "__main__":
    main()
