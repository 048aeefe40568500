"""``python -m scoresde.train [overrides]``: compose ``conf/config.yaml``, run
:func:`scoresde.training.run`.

    python -m scoresde.train                                   # the main job (digits, MLP, VP)
    python -m scoresde.train experiment=toy2d logger=none device=cpu
    python -m scoresde.train -m sde=vp,subvp,ve seed=0,1       # sweep -> multirun/<date>/<time>/<n>
    torchrun --standalone --nproc_per_node=2 -m scoresde.train training.batch_size=128

Artifacts go to Hydra's output directory; exit codes 0 / 2 (bad config) / 3 (non-finite) / 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from scoresde.cli import RunContext, run_command
from scoresde.training import run

__all__ = ["job_name_and_group", "main", "run"]


def job_name_and_group(hc: Any) -> tuple[str, str | None]:
    """wandb run name and group from the Hydra job: sweeps share one group (the sweep directory)."""
    overrides = hc.job.override_dirname or ""
    if hc.mode == RunMode.MULTIRUN:
        sweep = Path(str(hc.sweep.dir))
        group = f"{hc.job.name}-{sweep.parent.name}_{sweep.name}"
        return (f"{hc.job.num}:{overrides}" if overrides else f"{hc.job.name}-{hc.job.num}"), group
    run_dir = Path(hc.runtime.output_dir)
    return overrides or f"{hc.job.name}-{run_dir.parent.name}_{run_dir.name}", None


def _train(cfg: DictConfig, ctx: RunContext) -> Any:
    name, group = job_name_and_group(HydraConfig.get())
    return run(cfg, ctx.out_dir, name=name, group=group)


def main(argv: list[str] | None = None) -> None:
    """``python -m scoresde.train``: :func:`run` through :func:`scoresde.cli.run_command`."""
    run_command("train", "config", _train, argv=argv)


if __name__ == "__main__":
    main()
