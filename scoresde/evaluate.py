"""``python -m scoresde.evaluate``: sample-quality metrics.

The command line of :func:`scoresde.evaluation.run_evaluation`:

    python -m scoresde.evaluate ckpt=RUN num_samples=1000 seeds=[0,1,2]
    python -m scoresde.evaluate samples=outputs/generate/.../samples.npz data=digits
    torchrun --nproc_per_node=2 -m scoresde.evaluate ckpt=RUN

Configs: ``conf/evaluate.yaml`` (types and defaults: :class:`scoresde.evaluation.EvaluateConfig`).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from scoresde.cli import RunContext, run_command
from scoresde.evaluation import EvaluateConfig, run_evaluation
from scoresde.io.atomic import write_json_atomic
from scoresde.io.loggers import make_logger

__all__ = ["main"]


def _evaluate(cfg: DictConfig, ctx: RunContext) -> dict | None:
    logger_cfg, plain = cfg.logger, OmegaConf.to_container(cfg, resolve=True)
    sample_dir = ctx.out_dir if cfg.save_samples else None
    report = run_evaluation(cfg, device=ctx.device, process=ctx.process, sample_dir=sample_dir)
    if report is None:  # another rank: rank 0 writes and logs
        return None
    report["config"] = plain
    path = write_json_atomic(ctx.out_dir / "evaluate.json", report, default=str)
    ctx.print(f"{'metric':<12} {'mean':>12} {'std':>12} {'min':>12}")
    for k, s in report["summary"].items():
        ctx.print(f"{k:<12} {s['mean']:>12.5g} {s['std']:>12.4g} {s['min']:>12.5g}")
    ctx.print(f"wrote {path}")
    logger = make_logger(logger_cfg, cfg, ctx.out_dir, name="evaluate")
    try:
        flat = {f"eval/{k}_{s}": v for k, d in report["summary"].items() for s, v in d.items()}
        logger.log(flat, step=int(report.get("step") or 0))
    finally:
        logger.finish()
    return report


def main(argv: list[str] | None = None) -> None:
    """Compose ``conf/evaluate.yaml`` with the command line and run :func:`run_evaluation`."""
    run_command(
        "evaluate", "evaluate", _evaluate, distributed_job=True, schema=EvaluateConfig, argv=argv
    )


if __name__ == "__main__":
    main()
