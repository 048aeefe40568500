"""``build_feature_net(cfg)``: the job of ``python -m scoresde.features``.

It trains (or reuses) the feature net and caches it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scoresde.evaluation.config import FeaturesConfig
from scoresde.evaluation.feature_cache import feature_net_path, load_feature_file, save_feature_net
from scoresde.evaluation.feature_net import check_dataset, train_feature_net
from scoresde.io.atomic import write_json_atomic

__all__ = ["build_feature_net"]


def build_feature_net(
    cfg: FeaturesConfig, out_dir: str | Path, device: str = "cpu"
) -> dict[str, Any]:
    """Train the feature net of ``cfg.dataset`` (or reuse the cached one unless ``force``),
    cache it, and write ``features.json`` (its path and info) into ``out_dir``.

    Returns the info with ``path`` and ``trained`` (False when the cached net was reused).
    """
    dataset = check_dataset(str(cfg.dataset))
    for key in ("epochs", "batch_size", "width", "feature_dim"):
        v = getattr(cfg, key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(
                f"{key} must be null (the dataset's default) or an integer >= 1, got {v!r}"
            )
    if not cfg.lr > 0:
        raise ValueError(f"lr must be > 0, got {cfg.lr!r}")
    path = feature_net_path(dataset, cfg.cache_dir)
    trained = cfg.force or not path.exists()
    if trained:
        net, info = train_feature_net(
            dataset,
            epochs=cfg.epochs,
            batch_size=cfg.batch_size,
            lr=float(cfg.lr),
            seed=int(cfg.seed),
            width=cfg.width,
            feature_dim=cfg.feature_dim,
            device=str(device),
            progress=bool(cfg.progress),
        )
        save_feature_net(path, net.cpu(), info)
    else:
        _, info = load_feature_file(path, "cpu")
    out = {"path": str(path), "trained": trained, **info}
    write_json_atomic(Path(out_dir) / "features.json", out)
    return out
