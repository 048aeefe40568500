"""``python -m scoresde.likelihood``: likelihood (and optionally the variational bound) of a trained
run on a dataset split. The library code is :mod:`scoresde.likelihood.evaluation`; options are in
``conf/likelihood.yaml`` (``--help``)."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from scoresde.likelihood.evaluation import RESULT_FILE, evaluate, report


@hydra.main(version_base="1.3", config_path="pkg://scoresde.conf", config_name="likelihood")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns the mean (bits/dim or nats) for sweepers."""
    from scoresde.io.loggers import make_logger

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    logger, code = None, 0
    try:
        logger = make_logger(cfg.logger, cfg, output_dir, name="likelihood")
        record = evaluate(cfg, output_dir, log=logger.log)
        print(report(record, output_dir / RESULT_FILE))
        return record["result"].get("mean")
    except ValueError as e:
        code = 2
        print(f"error: {e}", file=sys.stderr)
        sys.exit(code)
    finally:
        if logger is not None:
            logger.finish(exit_code=code)


if __name__ == "__main__":
    main()
