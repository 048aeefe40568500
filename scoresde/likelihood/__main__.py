"""``python -m scoresde.likelihood``: likelihood (and optionally the variational bound) of a trained
run on a dataset split; ``torchrun --nproc_per_node=K -m scoresde.likelihood ...`` shards the
batches over K processes. The library code is :mod:`scoresde.evaluation.likelihood`; options are
in ``conf/likelihood.yaml`` (``--help``)."""

from __future__ import annotations

from omegaconf import DictConfig

from scoresde.cli import RunContext, run_command
from scoresde.evaluation.likelihood import RESULT_FILE, evaluate, report
from scoresde.io.loggers import make_logger


def _likelihood(cfg: DictConfig, ctx: RunContext) -> float | None:
    """One job: evaluate, print the report on rank 0; returns the mean for sweepers."""
    logger = make_logger(cfg.logger, cfg, ctx.out_dir, name="likelihood") if ctx.is_main else None
    code = 1
    try:
        record = evaluate(cfg, ctx.out_dir, log=logger.log if logger else None, process=ctx.process)
        ctx.print(report(record, ctx.out_dir / RESULT_FILE))
        code = 0
        return record["result"].get("mean")
    finally:
        if logger is not None:
            logger.finish(exit_code=code)


def main() -> None:
    run_command("likelihood", "likelihood", _likelihood, distributed_job=True)


if __name__ == "__main__":
    main()
