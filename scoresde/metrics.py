"""Sample-quality metrics: distances between two sets of samples or of features.

Vector data (e.g. 2-D toy sets, flattened images):

- ``sliced_wasserstein``: ``SW_p = (E_theta W_p^p(theta^T x, theta^T y))^(1/p)``, theta uniform on
  the sphere, each 1-D ``W_p`` exact (sorting; Bonneel et al. 2015).
- ``mmd2``: unbiased squared maximum mean discrepancy with an RBF kernel (Gretton et al. 2012),
  bandwidth from the median heuristic.
- ``energy_distance``: ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Szekely & Rizzo 2013), U-statistics.

Feature statistics (images through a feature extractor, see ``scoresde.features``):

- ``frechet_distance``: ``|mu1-mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))`` (FID, Heusel et al. 2017).
- ``kid``: unbiased MMD^2 with the kernel ``(x.y/d + 1)^3`` averaged over subsets
  (Binkowski et al. 2018).
- ``precision_recall``: k-NN manifold precision and recall (Kynkaanniemi et al. 2019).

Inputs are ``[N, D]`` tensors or arrays (trailing dims are flattened). Scalars are returned as
Python floats; distances are computed in float64, in row chunks so memory stays bounded
(``N = 10^4`` uses a few hundred MB at most).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray
FeatureExtractor = Callable[[Tensor], Tensor]
"""Protocol: images ``[B, C, H, W]`` in model range -> features ``[B, F]``."""

__all__ = [
    "FeatureExtractor",
    "PrecisionRecall",
    "energy_distance",
    "feature_statistics",
    "flatten_features",
    "frechet_distance",
    "kid",
    "mmd2",
    "precision_recall",
    "sliced_wasserstein",
]

_CHUNK = 1024


# ---------------------------------------------------------------------------- helpers
def _as_2d(name: str, x: ArrayLike, dtype: torch.dtype = torch.float64) -> Tensor:
    if not isinstance(x, (Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    t = torch.as_tensor(x).detach().to(device="cpu", dtype=dtype)
    if t.dim() == 1:
        t = t[:, None]
    if t.dim() < 1 or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N, D] with N >= 1, got {tuple(t.shape)}")
    t = t.reshape(t.shape[0], -1)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def _pair(x: ArrayLike, y: ArrayLike, min_n: int = 1) -> tuple[Tensor, Tensor]:
    xt, yt = _as_2d("x", x), _as_2d("y", y)
    if xt.shape[1] != yt.shape[1]:
        raise ValueError(
            f"x and y must have the same feature dim, got {xt.shape[1]} and {yt.shape[1]}"
        )
    for name, t in (("x", xt), ("y", yt)):
        if t.shape[0] < min_n:
            raise ValueError(f"{name} needs at least {min_n} samples, got {t.shape[0]}")
    return xt, yt


def _chunked_sum(a: Tensor, b: Tensor, fn: Callable[[Tensor], Tensor]) -> float:
    """``sum_ij fn(|a_i - b_j|^2)`` without building the full matrix."""
    total = 0.0
    for i in range(0, a.shape[0], _CHUNK):
        d2 = torch.cdist(a[i : i + _CHUNK], b).square_()
        total += float(fn(d2).sum())
    return total


def flatten_features(x: Tensor) -> Tensor:
    """The identity feature extractor for vectors: ``[B, *dims] -> [B, prod(dims)]``."""
    return x.reshape(x.shape[0], -1)


# ---------------------------------------------------------------------------- vector metrics
def _wasserstein_1d_pp(xs: Tensor, ys: Tensor, p: float) -> Tensor:
    """``W_p^p`` between 1-D empirical measures, per column. xs [n, L], ys [m, L], both sorted.

    ``W_p^p = int_0^1 |F_x^{-1}(u) - F_y^{-1}(u)|^p du``; both quantile functions are step
    functions with breakpoints at ``i/n`` and ``j/m``, so the integral is an exact finite sum.
    """
    n, m = xs.shape[0], ys.shape[0]
    if n == m:
        return (xs - ys).abs().pow(p).mean(0)
    u = torch.cat(
        [torch.arange(1, n + 1, dtype=xs.dtype) / n, torch.arange(1, m + 1, dtype=xs.dtype) / m]
    )
    u = torch.unique(torch.cat([u.new_zeros(1), u.clamp(max=1.0)]))  # sorted breakpoints in [0, 1]
    width = u[1:] - u[:-1]
    mid = 0.5 * (u[1:] + u[:-1])
    ix = (mid * n).floor().long().clamp(max=n - 1)
    iy = (mid * m).floor().long().clamp(max=m - 1)
    return ((xs[ix] - ys[iy]).abs().pow(p) * width[:, None]).sum(0)


def sliced_wasserstein(
    x: ArrayLike,
    y: ArrayLike,
    n_projections: int = 256,
    p: float = 2,
    generator: torch.Generator | None = None,
) -> float:
    """Sliced Wasserstein distance ``SW_p(x, y) = (mean_theta W_p^p(theta.x, theta.y))^(1/p)``.

    x: [N, D], y: [M, D] (N != M allowed: exact quantile-function integral). Directions theta are
    drawn uniformly on the unit sphere from ``generator``. For D = 1 the single direction is used
    and the result is the exact ``W_p``. For N(m1, I) vs N(m2, I) in D dims,
    ``SW_2 -> |m1-m2|/sqrt(D)``.
    """
    if isinstance(n_projections, bool) or not isinstance(n_projections, int) or n_projections < 1:
        raise ValueError(f"n_projections must be an integer >= 1, got {n_projections!r}")
    if not (isinstance(p, (int, float)) and p >= 1):
        raise ValueError(f"p must be a number >= 1, got {p!r}")
    xt, yt = _pair(x, y)
    d = xt.shape[1]
    if d == 1:
        theta = xt.new_ones(1, 1)
    else:
        theta = torch.randn(d, n_projections, generator=generator, dtype=torch.float64)
        theta = theta / theta.norm(dim=0, keepdim=True)
    total = xt.new_zeros(())
    count = 0
    for j in range(0, theta.shape[1], 64):  # bound memory: [N, 64] projections at a time
        th = theta[:, j : j + 64]
        xs = (xt @ th).sort(dim=0).values
        ys = (yt @ th).sort(dim=0).values
        total = total + _wasserstein_1d_pp(xs, ys, float(p)).sum()
        count += th.shape[1]
    return float((total / count) ** (1.0 / p))


def _median_bandwidth(xt: Tensor, yt: Tensor, max_points: int = 1000) -> float:
    """Median pairwise distance of the pooled sample (strided subsample of at most max_points)."""
    z = torch.cat([xt, yt])
    if z.shape[0] > max_points:
        z = z[torch.linspace(0, z.shape[0] - 1, max_points).round().long()]
    d = torch.pdist(z)
    med = float(d.median()) if d.numel() else 0.0
    return med if med > 0 else 1.0


def mmd2(x: ArrayLike, y: ArrayLike, bandwidth: float | None = None, paired: bool = False) -> float:
    """Unbiased squared MMD with the RBF kernel ``k(a, b) = exp(-|a-b|^2 / (2 h^2))``.

    ``MMD_u^2 = sum_{i!=j} k(x_i,x_j)/(n(n-1)) + sum_{i!=j} k(y_i,y_j)/(m(m-1))
    - 2 mean k(x_i,y_j)`` (Gretton et al. 2012, eq. 3). ``bandwidth`` h defaults to the median
    pairwise distance of the pooled sample. Unbiased, so it can be slightly negative when x and y
    share a distribution.
    ``paired``: (x_i, y_i) are i.i.d. pairs (N = M; y_i may depend on x_i, e.g. two samplers
    run from the same noise), and the cross term also leaves out i = j: the U-statistic over
    pairs of Gretton et al. 2012, eq. 4, still unbiased, and of far lower variance than
    independent sets when x_i ~ y_i.
    x: [N, D], y: [M, D], N, M >= 2.
    """
    xt, yt = _pair(x, y, min_n=2)
    if paired and xt.shape[0] != yt.shape[0]:
        raise ValueError(f"paired=True needs as many x as y, got {xt.shape[0]} and {yt.shape[0]}")
    if bandwidth is None:
        h = _median_bandwidth(xt, yt)
    elif isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool) and bandwidth > 0:
        h = float(bandwidth)
    else:
        raise ValueError(f"bandwidth must be a positive number or None, got {bandwidth!r}")
    gamma = 1.0 / (2.0 * h * h)

    def k(d2: Tensor) -> Tensor:
        return torch.exp(-gamma * d2)

    n, m = xt.shape[0], yt.shape[0]
    kxx = (_chunked_sum(xt, xt, k) - n) / (n * (n - 1))  # k(x, x) = 1 on the diagonal
    kyy = (_chunked_sum(yt, yt, k) - m) / (m * (m - 1))
    if paired:
        diag = float(k((xt - yt).square().sum(1)).sum())
        kxy = (_chunked_sum(xt, yt, k) - diag) / (n * (n - 1))
    else:
        kxy = _chunked_sum(xt, yt, k) / (n * m)
    return kxx + kyy - 2.0 * kxy


def energy_distance(x: ArrayLike, y: ArrayLike) -> float:
    """Energy distance ``2 E|X-Y| - E|X-X'| - E|Y-Y'|`` (Szekely & Rizzo 2013), U-statistics.

    Zero in expectation iff the distributions agree. x: [N, D], y: [M, D], N, M >= 2.
    """
    xt, yt = _pair(x, y, min_n=2)

    def dist(d2: Tensor) -> Tensor:
        return d2.clamp_min(0).sqrt()

    n, m = xt.shape[0], yt.shape[0]
    exy = _chunked_sum(xt, yt, dist) / (n * m)
    exx = _chunked_sum(xt, xt, dist) / (n * (n - 1))  # diagonal distances are 0
    eyy = _chunked_sum(yt, yt, dist) / (m * (m - 1))
    return 2.0 * exy - exx - eyy


# ---------------------------------------------------------------------------- feature statistics
def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[F]`` and covariance ``[F, F]`` (unbiased, float64) of features ``[N, F]``, N >= 2."""
    f = _as_2d("features", features).numpy()
    if f.shape[0] < 2:
        raise ValueError(f"features needs at least 2 rows for a covariance, got {f.shape[0]}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def frechet_distance(
    mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike, eps: float = 1e-6
) -> float:
    """Frechet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)`` (the FID formula)::

        d^2 = |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

    The square root is ``scipy.linalg.sqrtm``; when the product is singular (non-finite root),
    ``eps * I`` is added to both covariances; tiny imaginary parts from round-off are dropped and a
    large one raises ValueError. Returns ``d^2`` (what "FID" reports).
    """
    from scipy import linalg

    m1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    m2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    if m1.shape != m2.shape or m1.ndim != 1:
        raise ValueError(
            f"mu1 and mu2 must be vectors of the same length, got {m1.shape}, {m2.shape}"
        )
    f = m1.shape[0]
    if s1.shape != (f, f) or s2.shape != (f, f):
        raise ValueError(f"sigma1 and sigma2 must be [{f}, {f}], got {s1.shape} and {s2.shape}")
    diff = m1 - m2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1.dot(s2))
    singular = any(issubclass(w.category, linalg.LinAlgWarning) for w in caught)
    if singular or not np.isfinite(covmean).all():  # regularize: sqrt((S1 + eps I)(S2 + eps I))
        offset = np.eye(f) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", linalg.LinAlgWarning)
            covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if not np.isfinite(covmean).all():
        raise ValueError("frechet_distance: sqrtm of sigma1 sigma2 is not finite (check inputs)")
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.imag(covmean))) if covmean.size else 0.0
        scale = max(1.0, np.max(np.abs(np.real(covmean))))
        if imag > 1e-3 * scale:
            raise ValueError(
                f"frechet_distance: sqrtm has a large imaginary component ({imag:.3g})"
            )
        covmean = np.real(covmean)
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _poly_mmd2_unbiased(a: Tensor, b: Tensor) -> Tensor:
    d = a.shape[1]
    kaa = (a @ a.T / d + 1) ** 3
    kbb = (b @ b.T / d + 1) ** 3
    kab = (a @ b.T / d + 1) ** 3
    n, m = a.shape[0], b.shape[0]
    return (
        (kaa.sum() - kaa.diagonal().sum()) / (n * (n - 1))
        + (kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
        - 2 * kab.mean()
    )


def kid(
    f1: ArrayLike,
    f2: ArrayLike,
    num_subsets: int = 100,
    subset_size: int = 1000,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the polynomial kernel
    ``k(a, b) = (a.b / d + 1)^3``, averaged over ``num_subsets`` random subsets of
    ``min(subset_size, N1, N2)`` rows of each set (drawn without replacement from ``generator``).

    f1: [N1, F], f2: [N2, F]. Returns ``(mean, std)`` over the subsets.
    """
    for name, v in (("num_subsets", num_subsets), ("subset_size", subset_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    a, b = _pair(f1, f2, min_n=2)
    size = max(2, min(subset_size, a.shape[0], b.shape[0]))
    vals = torch.empty(num_subsets, dtype=torch.float64)
    for s in range(num_subsets):
        ia = torch.randperm(a.shape[0], generator=generator)[:size]
        ib = torch.randperm(b.shape[0], generator=generator)[:size]
        vals[s] = _poly_mmd2_unbiased(a[ia], b[ib])
    std = float(vals.std()) if num_subsets > 1 else 0.0
    return float(vals.mean()), std


class PrecisionRecall(NamedTuple):
    precision: float
    recall: float


def _knn_radii(x: Tensor, k: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row. [N] ."""
    out = torch.empty(x.shape[0], dtype=x.dtype)
    for i in range(0, x.shape[0], _CHUNK):
        d = torch.cdist(x[i : i + _CHUNK], x)
        out[i : i + _CHUNK] = d.kthvalue(k + 1, dim=1).values  # +1: the point itself at distance 0
    return out


def _coverage(query: Tensor, ref: Tensor, radii: Tensor) -> float:
    """Fraction of query rows inside at least one ball B(ref_j, radii_j)."""
    inside = 0
    for i in range(0, query.shape[0], _CHUNK):
        d = torch.cdist(query[i : i + _CHUNK], ref)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / query.shape[0]


def precision_recall(real: ArrayLike, fake: ArrayLike, k: int = 3) -> PrecisionRecall:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    Each set's manifold is the union of balls around its points with radius the distance to the
    k-th nearest neighbour. precision = fraction of fake inside the real manifold; recall =
    fraction of real inside the fake manifold. real: [N, F], fake: [M, F], N, M > k.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    r, f = _pair(real, fake, min_n=k + 1)
    precision = _coverage(f, r, _knn_radii(r, k))
    recall = _coverage(r, f, _knn_radii(f, k))
    return PrecisionRecall(precision, recall)
