"""Inception-v3 features and FID / KID / IS through torch-fidelity (optional: ``scoresde[fid]``).

torch-fidelity pulls torchvision, so it is not installed on CPU-only machines; the offline
alternative is the small feature nets of :mod:`scoresde.evaluation.feature_net`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "INCEPTION_WEIGHTS_FILE",
    "inception_feature_extractor",
    "inception_metrics",
    "require_torch_fidelity",
]

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def require_torch_fidelity(weights_path: str | None = None):
    """Import torch_fidelity or raise ImportError saying how to get it."""
    try:
        import torch_fidelity
    except ImportError as e:
        where = weights_path or f"<torch hub cache>/checkpoints/{INCEPTION_WEIGHTS_FILE}"
        raise ImportError(
            "Inception-v3 FID/KID/IS need torch-fidelity: pip install scoresde[fid]; "
            f"it needs the Inception weights file at {where} (pass weights_path= / "
            "inception_weights=...; no download happens offline). It is not installed on "
            "CPU-only machines because it pulls torchvision. Offline alternative: "
            "features=digits or features=fashion (FD in a small classifier's features)."
        ) from e
    if weights_path is not None and not Path(weights_path).exists():
        raise FileNotFoundError(f"Inception weights file not found: {weights_path}")
    return torch_fidelity


def _to_uint8_rgb(x: Tensor) -> Tensor:
    """Model-range images [-1, 1], [B, C, H, W] -> uint8 [B, 3, H, W]."""
    x = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def inception_feature_extractor(
    weights_path: str | None = None, device: str = "cpu", batch_size: int = 64
) -> Callable[[Tensor], Tensor]:
    """torch-fidelity's Inception-v3 (``inception-v3-compat``) 2048-D pool features."""
    require_torch_fidelity(weights_path)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    fe = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=weights_path
    )
    fe = fe.to(device).eval()

    @torch.no_grad()
    def extract(x: Tensor) -> Tensor:
        out = []
        for i in range(0, x.shape[0], batch_size):
            (f,) = fe(_to_uint8_rgb(x[i : i + batch_size]).to(device))
            out.append(f.cpu().double())
        return torch.cat(out)

    return extract


class _ImageSet(torch.utils.data.Dataset):
    def __init__(self, x: Tensor):
        self.x = _to_uint8_rgb(x)

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.x[i]


def inception_metrics(
    fake: Tensor,
    real: Tensor,
    *,
    weights_path: str | None = None,
    fid: bool = True,
    kid: bool = True,
    isc: bool = True,
    kid_subset_size: int = 1000,
    cuda: bool = False,
    batch_size: int = 64,
) -> dict:
    """Inception-v3 FID, KID and IS via ``torch_fidelity.calculate_metrics`` (Heusel et al. 2017,
    Binkowski et al. 2018, Salimans et al. 2016). fake, real: [N, C, H, W] in [-1, 1].
    Returns torch-fidelity's dict (keys ``frechet_inception_distance``,
    ``kernel_inception_distance_mean``, ``inception_score_mean``, ...)."""
    tf = require_torch_fidelity(weights_path)
    kwargs = {
        "input1": _ImageSet(fake),
        "input2": _ImageSet(real),
        "fid": fid,
        "kid": kid,
        "isc": isc,
        "kid_subset_size": min(kid_subset_size, fake.shape[0], real.shape[0]),
        "cuda": cuda,
        "batch_size": batch_size,
        "verbose": False,
    }
    if weights_path is not None:
        kwargs["feature_extractor_weights_path"] = weights_path
    return {k: float(v) for k, v in tf.calculate_metrics(**kwargs).items()}
