"""``python -m scoresde.generate``: samples from a trained run.

The command line of :func:`scoresde.generation.generate`:

    python -m scoresde.generate ckpt=RUN n=64 batch_size=32 sampler=dpm_solver
    python -m scoresde.generate ckpt=RUN task=inpaint task.mask=center
    torchrun --nproc_per_node=2 -m scoresde.generate ckpt=RUN n=1000

Configs: ``conf/generate.yaml`` (types and defaults: :class:`scoresde.generation.GenerateConfig`).
"""

from __future__ import annotations

from omegaconf import DictConfig

from scoresde.cli import RunContext, run_command
from scoresde.generation import GenerateConfig, generate

__all__ = ["main"]


def _generate(cfg: DictConfig, ctx: RunContext) -> dict:
    s = generate(cfg, ctx.out_dir, device=ctx.device, process=ctx.process)
    ctx.print(
        f"wrote {s.get('samples')} ({s['n']} samples, {s['nfe']} NFE, {s['wall_time_s']:.1f} s)"
    )
    return s


def main(argv: list[str] | None = None) -> None:
    """Compose ``conf/generate.yaml`` with the command line and run :func:`generate`."""
    run_command(
        "generate", "generate", _generate, distributed_job=True, schema=GenerateConfig, argv=argv
    )


if __name__ == "__main__":
    main()
