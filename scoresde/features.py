"""``python -m scoresde.features dataset=digits|fashion``: train and cache the FD feature net.

The library is :mod:`scoresde.evaluation` (:func:`~scoresde.evaluation.build_feature_net`);
configs: ``conf/features.yaml`` (types and defaults: :class:`scoresde.evaluation.FeaturesConfig`).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from scoresde.cli import RunContext, run_command
from scoresde.evaluation import (  # noqa: F401 - old home
    FeaturesConfig,
    build_feature_net,
    inception_metrics,
    make_feature_extractor,
)

__all__ = ["main"]


def _features(cfg: DictConfig, ctx: RunContext) -> dict:
    info = build_feature_net(OmegaConf.to_object(cfg), ctx.out_dir, device=str(ctx.device))
    verb = "trained" if info["trained"] else "cached (force=true retrains)"
    ctx.print(f"{verb} feature net {info['path']}: test accuracy {info['test_accuracy']:.4f}")
    return info


def main(argv: list[str] | None = None) -> None:
    """Compose ``conf/features.yaml`` with the command line and run :func:`build_feature_net`."""
    run_command("features", "features", _features, schema=FeaturesConfig, argv=argv)


if __name__ == "__main__":
    main()
