"""Metrics against known answers on Gaussians and uniforms.

Checked with closed forms and Monte-Carlo tolerances.
"""

import math
import sys

import numpy as np
import pytest
import torch
from scipy.stats import norm, wasserstein_distance

from scoresde.metrics import (
    energy_distance,
    feature_statistics,
    frechet_distance,
    kid,
    mmd2,
    precision_recall,
    sliced_wasserstein,
)


def _quantile_sample(n, mean=0.0, std=1.0):
    """Deterministic 'perfect' 1-D Gaussian sample: the n quantiles at (i + 1/2) / n. [n, 1]"""
    u = (np.arange(n) + 0.5) / n
    return torch.from_numpy(mean + std * norm.ppf(u))[:, None]


# ---------------------------------------------------------------------------- Frechet distance
def test_frechet_distance_matches_closed_form_for_non_commuting_2x2_covariances():
    # For 2x2 SPD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)); here M = A B (same eigenvalues as
    # A^1/2 B A^1/2), so d^2 = |dmu|^2 + tr A + tr B - 2 sqrt(tr(AB) + 2 sqrt(det A det B)).
    a = np.array([[2.0, 0.8], [0.8, 1.0]])
    r = np.array([[math.cos(0.7), -math.sin(0.7)], [math.sin(0.7), math.cos(0.7)]])
    b = r @ np.diag([3.0, 0.2]) @ r.T
    assert not np.allclose(a @ b, b @ a)  # genuinely non-commuting
    mu1, mu2 = np.array([0.5, -1.0]), np.array([1.5, 0.5])
    exact = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(a)
        + np.trace(b)
        - 2 * math.sqrt(np.trace(a @ b) + 2 * math.sqrt(np.linalg.det(a) * np.linalg.det(b)))
    )
    assert frechet_distance(mu1, a, mu2, b) == pytest.approx(exact, rel=1e-8, abs=1e-10)
    assert frechet_distance(mu1, a, mu1, a) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_diagonal_gaussians_is_sum_of_squared_std_differences():
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 0.25])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, -2.0])
    exact = 5.0 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(exact, rel=1e-10)


def test_frechet_distance_handles_singular_covariances_and_rejects_indefinite_ones():
    # singular product: sqrtm of the zero matrix; the eps*I safeguard keeps it finite
    d = frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.diag([0.0, 1.0]))
    assert math.isfinite(d) and d == pytest.approx(2.0, abs=1e-2)
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))
    with pytest.raises(ValueError, match="sigma1"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))


def test_frechet_distance_from_sample_statistics_converges_to_the_exact_value(gen):
    a = torch.tensor([[1.0, 0.5], [0.5, 2.0]], dtype=torch.float64)
    la = torch.linalg.cholesky(a)
    x = torch.randn(20000, 2, generator=gen, dtype=torch.float64) @ la.T
    y = torch.randn(20000, 2, generator=gen, dtype=torch.float64) * 0.5 + 1.0
    mu_x, s_x = feature_statistics(x)
    mu_y, s_y = feature_statistics(y)
    assert np.allclose(s_x, np.cov(x.numpy(), rowvar=False))
    b = 0.25 * np.eye(2)
    exact = (
        2.0
        + np.trace(a.numpy())
        + 0.5
        - 2
        * math.sqrt(
            np.trace(a.numpy() @ b) + 2 * math.sqrt(np.linalg.det(a.numpy()) * np.linalg.det(b))
        )
    )
    # statistics from 2x10^4 samples: errors ~ 1/sqrt(n) ~ 0.01 per moment
    assert frechet_distance(mu_x, s_x, mu_y, s_y) == pytest.approx(exact, abs=0.08)


# ---------------------------------------------------------------------------- sliced Wasserstein
def test_w2_of_1d_gaussians_matches_closed_form_for_equal_and_unequal_sizes():
    # W2^2(N(m1, s1^2), N(m2, s2^2)) = (m1 - m2)^2 + (s1 - s2)^2; quantile samples are near-exact
    exact = math.sqrt(1.0**2 + (1.0 - 2.0) ** 2)
    x = _quantile_sample(4000, 0.0, 1.0)
    assert sliced_wasserstein(x, _quantile_sample(4000, 1.0, 2.0)) == pytest.approx(exact, rel=0.01)
    assert sliced_wasserstein(x, _quantile_sample(2500, 1.0, 2.0)) == pytest.approx(exact, rel=0.01)


def test_w1_with_unequal_sizes_matches_scipy(gen):
    x = torch.randn(300, 1, generator=gen, dtype=torch.float64)
    y = 2 * torch.rand(170, 1, generator=gen, dtype=torch.float64)
    ref = wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert sliced_wasserstein(x, y, p=1) == pytest.approx(ref, rel=1e-10)


def test_sliced_w2_of_isotropic_gaussians_is_mean_shift_over_sqrt_dim(gen):
    # theta.x ~ N(0, 1), theta.y ~ N(theta.mu, 1): E_theta (theta.mu)^2 = |mu|^2 / D
    d, n = 5, 2000
    mu = torch.tensor([2.0, -1.0, 0.0, 1.0, 0.5], dtype=torch.float64)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, d, generator=gen, dtype=torch.float64) + mu
    sw = sliced_wasserstein(x, y, n_projections=256, generator=gen)
    assert sw == pytest.approx(float(mu.norm()) / math.sqrt(d), rel=0.08)
    same = sliced_wasserstein(
        x, torch.randn(n, d, generator=gen, dtype=torch.float64), generator=gen
    )
    assert same < 0.1


def test_sliced_wasserstein_is_reproducible_with_a_generator_and_validates_input():
    x, y = torch.randn(100, 3), torch.randn(120, 3) + 1
    a = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))
    b = sliced_wasserstein(x, y, generator=torch.Generator().manual_seed(3))
    assert a == b
    with pytest.raises(ValueError, match="same feature dim"):
        sliced_wasserstein(x, torch.randn(10, 2))
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, y, n_projections=0)
    with pytest.raises(ValueError, match="NaN"):
        sliced_wasserstein(x, torch.full((5, 3), float("nan")))


# ---------------------------------------------------------------------------- MMD / energy
def test_mmd2_is_unbiased_against_the_closed_form_for_gaussians(gen):
    # k = exp(-|a-b|^2 / (2 h^2)); a - b ~ N(m, 2 s^2 I) gives
    # E k = (h^2 / (h^2 + 2 s^2))^(D/2) exp(-|m|^2 / (2 (h^2 + 2 s^2))), so
    # MMD^2 = 2 c (1 - exp(-|mu|^2 / (2 (h^2 + 2 s^2)))), c = (h^2 / (h^2 + 2 s^2))^(D/2).
    d, h, n, reps = 2, 1.0, 150, 30
    mu = torch.tensor([0.6, 0.0], dtype=torch.float64)
    c = (h**2 / (h**2 + 2)) ** (d / 2)
    exact = 2 * c * (1 - math.exp(-float(mu @ mu) / (2 * (h**2 + 2))))
    est, same = [], []
    for _ in range(reps):
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        est.append(mmd2(x, torch.randn(n, d, generator=gen, dtype=torch.float64) + mu, bandwidth=h))
        same.append(mmd2(x, torch.randn(n, d, generator=gen, dtype=torch.float64), bandwidth=h))
    se = np.std(est, ddof=1) / math.sqrt(reps)
    assert abs(np.mean(est) - exact) < 4 * se + 1e-4
    se0 = np.std(same, ddof=1) / math.sqrt(reps)
    assert abs(np.mean(same)) < 4 * se0  # unbiased: no positive offset for equal distributions
    assert min(same) < 0  # an unbiased estimator of 0 goes negative


def test_paired_mmd2_is_unbiased_for_dependent_pairs_and_far_less_noisy(gen):
    # y_i = x_i + mu: y ~ N(mu, I), the closed form above, but each y_i is tied to its x_i.
    # The two-sample estimator's cross term then holds k(x_i, y_i) = exp(-|mu|^2 / 2h^2) on
    # its diagonal and is biased; the U-statistic over pairs is not, and its spread is smaller
    d, h, n, reps = 2, 1.0, 150, 30
    mu = torch.tensor([0.3, 0.0], dtype=torch.float64)
    c = (h**2 / (h**2 + 2)) ** (d / 2)
    exact = 2 * c * (1 - math.exp(-float(mu @ mu) / (2 * (h**2 + 2))))
    paired, naive, indep = [], [], []
    for _ in range(reps):
        x = torch.randn(n, d, generator=gen, dtype=torch.float64)
        paired.append(mmd2(x, x + mu, bandwidth=h, paired=True))
        naive.append(mmd2(x, x + mu, bandwidth=h))
        indep.append(
            mmd2(x, torch.randn(n, d, generator=gen, dtype=torch.float64) + mu, bandwidth=h)
        )
    se = np.std(paired, ddof=1) / math.sqrt(reps)
    assert abs(np.mean(paired) - exact) < 4 * se + 1e-5
    # the two-sample form's offset: 2 (E k(x_i, y_j) - k(x_i, y_i)) / n, negative here
    offset = (
        2 * (c * math.exp(-float(mu @ mu) / (2 * (h**2 + 2))) - math.exp(-float(mu @ mu) / 2)) / n
    )
    se_naive = np.std(naive, ddof=1) / math.sqrt(reps)
    assert abs(np.mean(naive) - (exact + offset)) < 4 * se_naive + 1e-5
    assert abs(offset) > 10 * se
    assert np.std(paired) < 0.3 * np.std(indep)
    with pytest.raises(ValueError, match="paired"):
        mmd2(x, x[:-1], paired=True)


def test_mmd2_with_median_heuristic_separates_distributions(gen):
    x = torch.randn(1000, 3, generator=gen)
    same = mmd2(x, torch.randn(1000, 3, generator=gen))
    shifted = mmd2(x, torch.randn(1000, 3, generator=gen) + 0.5)
    assert abs(same) < 3e-3
    assert shifted > 0.02
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(x, x, bandwidth=-1.0)


def test_energy_distance_matches_closed_form_for_1d_gaussians(gen):
    # 2 E|X - Y| - E|X - X'| - E|Y - Y'| with X - Y ~ N(-m, 2) and X - X' ~ N(0, 2):
    # E|Z| for Z ~ N(m, s^2) = s sqrt(2/pi) exp(-m^2 / 2 s^2) + m (1 - 2 Phi(-m / s))
    m, s = 1.0, math.sqrt(2.0)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-(m**2) / (2 * s**2)) + m * (
        1 - 2 * norm.cdf(-m / s)
    )
    exact = 2 * e_xy - 2 * 2 / math.sqrt(math.pi)
    vals = [
        energy_distance(
            torch.randn(1000, 1, generator=gen, dtype=torch.float64),
            torch.randn(1000, 1, generator=gen, dtype=torch.float64) + m,
        )
        for _ in range(5)
    ]
    se = np.std(vals, ddof=1) / math.sqrt(len(vals))
    assert abs(np.mean(vals) - exact) < 4 * se + 5e-3


# --------------------------------------------------------------------------- KID / precision-recall
def test_kid_is_near_zero_for_one_distribution_and_positive_for_shifted(gen):
    x = torch.randn(1000, 8, generator=gen)
    same_mean, same_std = kid(
        x, torch.randn(1000, 8, generator=gen), num_subsets=20, subset_size=500, generator=gen
    )
    diff_mean, diff_std = kid(
        x, torch.randn(1000, 8, generator=gen) + 0.5, num_subsets=20, subset_size=500, generator=gen
    )
    assert abs(same_mean) < 3 * same_std
    assert diff_mean > 10 * diff_std > 0
    with pytest.raises(ValueError, match="num_subsets"):
        kid(x, x, num_subsets=0)


def test_precision_recall_is_one_on_same_support_and_overlap_fraction_on_shifted_support(gen):
    real = torch.rand(1000, 2, generator=gen)
    same = precision_recall(real, torch.rand(1000, 2, generator=gen), k=3)
    assert same.precision > 0.95 and same.recall > 0.95
    # U[0,1]^2 vs U[0.5,1.5]^2: a quarter of each support lies in the other (the k-NN balls
    # add a boundary layer of ~0.02; binomial sd 0.014)
    shifted = precision_recall(real, torch.rand(1000, 2, generator=gen) + 0.5, k=3)
    assert shifted.precision == pytest.approx(0.26, abs=0.06)
    assert shifted.recall == pytest.approx(0.26, abs=0.06)
    # fake collapsed onto [0, 0.2]^2 (4% of the real support): high precision, recall ~0.04
    collapsed = precision_recall(real, 0.2 * torch.rand(1000, 2, generator=gen), k=3)
    assert collapsed.precision > 0.9 and collapsed.recall < 0.1
    with pytest.raises(ValueError, match="k must"):
        precision_recall(real, real, k=0)


# ---------------------------------------------------------------------------- Inception (optional)
def test_missing_torch_fidelity_gives_an_install_message(monkeypatch):
    from scoresde.features import inception_metrics, make_feature_extractor

    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import raises ImportError
    with pytest.raises(ImportError, match=r"pip install scoresde\[fid\]") as e:
        inception_metrics(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8))
    msg = str(e.value)
    assert "Inception weights file" in msg and "torchvision" in msg
    with pytest.raises(ImportError, match="torch-fidelity"):
        make_feature_extractor("inception", weights_path="/nonexistent/weights.pth")
