"""``python -m scoresde.convert checkpoint=... config=... [out=...]``: a Score SDE release
checkpoint to a scoresde run directory (see conf/convert.yaml and :mod:`scoresde.interop`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from scoresde.cli import RunContext, run_command
from scoresde.interop import convert_score_sde, write_run

__all__ = ["convert", "main"]


def convert(cfg: DictConfig, out_dir: str | Path) -> Path:
    """Convert ``cfg.checkpoint`` with the release config ``cfg.config`` into ``cfg.out`` (or
    ``out_dir``); returns the written checkpoint path."""
    config: Any = str(cfg.config)
    if config.endswith(".json"):
        config = json.loads(Path(config).read_text())
    c = convert_score_sde(str(cfg.checkpoint), config)
    return write_run(c, Path(cfg.out) if cfg.get("out") else Path(out_dir))


def _convert(cfg: DictConfig, ctx: RunContext) -> Path:
    path = convert(cfg, ctx.out_dir)
    ctx.print(f"run directory: {path.parent.parent}\ncheckpoint: {path}")
    return path


def main(argv: list[str] | None = None) -> None:
    """The command line, through :func:`scoresde.cli.run_command`."""
    run_command("convert", "convert", _convert, argv=argv)


if __name__ == "__main__":
    main()
