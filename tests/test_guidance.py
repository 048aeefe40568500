"""Guided scores against a labelled Gaussian-mixture oracle (exact p_t(x | y) and p_t(y | x)).

Tolerances: sample means within 4.5 standard errors (se from the exact conditional covariance),
covariances within 4.5 se of the sample covariance entries plus a small solver allowance.
"""

import itertools
import math

import pytest
import torch

from scoresde.controllable.guidance import (
    as_labels,
    classifier_free_score_fn,
    classifier_guided_score_fn,
    classifier_log_prob_grad,
    combine_guided_scores,
    model_num_classes,
)
from scoresde.nets.classifier import NoisyClassifier
from scoresde.oracle import GaussianMixture
from scoresde.sampling import sample
from scoresde.sde import VESDE, VPSDE
from scoresde.training.classifier import classifier_loss, fit_classifier, noisy_accuracy

D64 = torch.float64
N = 3000


def labelled_gm() -> GaussianMixture:
    """Two classes, two overlapping components each: p(y | x) is smooth, p(x | y) bimodal."""
    means = [[-1.5, 0.0], [0.0, 1.5], [1.5, 0.0], [0.0, -1.5]]
    return GaussianMixture([0.3, 0.2, 0.25, 0.25], means, 0.6, labels=[0, 0, 1, 1]).to(D64)


def exact_classifier(gm, sde):
    return lambda x, t: gm.class_log_prob_t(x, t, sde)


class OracleModel:
    """A label-conditional 'model' with the exact scores: model(x, t, y=None)."""

    def __init__(self, gm, sde):
        self.gm, self.sde, self.num_classes = gm, sde, gm.num_classes

    def __call__(self, x, t, y=None):
        return self.gm.score_t(x, t, self.sde, y=y)


def assert_matches(x, gm_y, z=4.5, cov_slack=0.03):
    n = x.shape[0]
    mu, cov = gm_y.mean(), gm_y.covariance()
    se = (torch.diagonal(cov) / n).sqrt()
    assert ((x.mean(0) - mu).abs() <= z * se).all(), (x.mean(0), mu, se)
    # se of a covariance entry: sqrt((S_ij^2 + S_ii S_jj) / n) (Gaussian approximation)
    se_cov = ((cov**2 + torch.outer(torch.diagonal(cov), torch.diagonal(cov))) / n).sqrt()
    assert ((torch.cov(x.T) - cov).abs() <= z * se_cov + cov_slack).all(), (torch.cov(x.T), cov)


@pytest.mark.parametrize("sde", [VPSDE(), VESDE(sigma_min=0.01, sigma_max=10.0)], ids=["vp", "ve"])
def test_cfg_equals_classifier_guidance_and_bayes(sde, gen):
    """(1 + w) s(x|y) - w s(x) == s(x) + (1 + w) grad log p_t(y|x) exactly; scale 1 gives s(x|y)."""
    gm = labelled_gm()
    x = torch.randn(64, 2, generator=gen, dtype=D64) * 2
    t = torch.rand(64, generator=gen, dtype=D64) * 0.99 + 0.01
    y = torch.randint(0, 2, (64,), generator=gen)
    uncond = gm.score_fn(sde)
    clf = exact_classifier(gm, sde)
    cond = gm.score_fn(sde, y=y)
    guided = classifier_guided_score_fn(uncond, clf, y, scale=1.0, num_classes=2)
    torch.testing.assert_close(guided(x, t), cond(x, t), rtol=1e-9, atol=1e-9)
    for w in (0.0, 0.5, 3.0):
        cfg = classifier_free_score_fn(OracleModel(gm, sde), y, w=w)
        cg = classifier_guided_score_fn(uncond, clf, y, scale=1.0 + w)
        torch.testing.assert_close(cfg(x, t), cg(x, t), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(
            cfg(x, t), combine_guided_scores(cond, uncond, w)(x, t), rtol=0, atol=0
        )


def test_classifier_gradient_matches_finite_differences(gen):
    sde = VPSDE()
    gm = labelled_gm()
    x = torch.randn(8, 2, generator=gen, dtype=D64)
    t = torch.full((8,), 0.3, dtype=D64)
    y = torch.ones(8, dtype=torch.long)
    with torch.no_grad():  # samplers run under no_grad: the gradient must still work
        g = classifier_log_prob_grad(exact_classifier(gm, sde), x, t, y)
    h = 1e-6
    for k in range(2):
        e = torch.zeros_like(x)
        e[:, k] = h
        fd = (
            gm.class_log_prob_t(x + e, t, sde)[:, 1] - gm.class_log_prob_t(x - e, t, sde)[:, 1]
        ) / (2 * h)
        torch.testing.assert_close(g[:, k], fd, rtol=1e-5, atol=1e-7)


def test_classifier_guidance_scale_one_samples_class_conditional():
    """PC sampling with s + grad log p_t(y|x) (exact classifier) draws from p_0(x | y)."""
    sde = VPSDE()
    gm = labelled_gm()
    score = classifier_guided_score_fn(gm.score_fn(sde), exact_classifier(gm, sde), 0, scale=1.0)
    n = 2000
    res = sample(
        sde,
        score,
        (n, 2),
        method="reverse_diffusion",
        steps=200,
        dtype=D64,
        generator=torch.Generator().manual_seed(1),
    )
    assert_matches(res.x, gm.conditional(0))
    # against exact samples of p_0(x | y): the share of the class's first component (x0 < x1 splits
    # (-1.5, 0) from (0, 1.5)); weights 0.3 : 0.2
    ref = gm.conditional(0).sample(20000, generator=torch.Generator().manual_seed(2))
    p_ref = (ref[:, 0] < ref[:, 1]).double().mean().item()
    p = (res.x[:, 0] < res.x[:, 1]).double().mean().item()
    assert abs(p - p_ref) <= 4.5 * math.sqrt(p_ref * (1 - p_ref) * (1 / n + 1 / 20000))


def test_cfg_w0_with_oracle_model_samples_class_conditional():
    """Classifier-free guidance at w = 0 with exact conditional scores, probability-flow ODE."""
    sde = VPSDE()
    gm = labelled_gm()
    score = classifier_free_score_fn(OracleModel(gm, sde), 1, w=0.0)
    res = sample(
        sde,
        score,
        (N, 2),
        method="ode",
        dtype=D64,
        rtol=1e-6,
        atol=1e-6,
        generator=torch.Generator().manual_seed(3),
    )
    assert_matches(res.x, gm.conditional(1))


def test_guidance_strength_sharpens_towards_class():
    """Direction of w > 0: the exact posterior p_0(y | x) of the samples rises with w, and the
    samples contract towards the class (smaller total variance): guidance targets
    p(x | y) p(y | x)^w, trading diversity for class fidelity."""
    sde = VPSDE()
    gm = labelled_gm()
    n = 1500
    post, spread = [], []
    for w in (0.0, 1.0, 4.0):
        score = classifier_free_score_fn(OracleModel(gm, sde), 0, w=w)
        x = sample(
            sde,
            score,
            (n, 2),
            method="ode",
            dtype=D64,
            rtol=1e-5,
            atol=1e-5,
            generator=torch.Generator().manual_seed(4),
        ).x
        p = gm.class_log_prob_t(x)[:, 0].exp()
        post.append((p.mean().item(), p.std().item() / math.sqrt(n)))
        spread.append(torch.cov(x.T).trace().item())
    exact_post = gm.class_log_prob_t(
        gm.conditional(0).sample(20000, torch.Generator().manual_seed(5))
    )[:, 0]
    assert abs(post[0][0] - exact_post.exp().mean().item()) < 4.5 * post[0][1] + 0.005
    for (a, sa), (b, sb) in itertools.pairwise(post):
        assert b - a > 4 * math.hypot(sa, sb), post
    assert post[-1][0] > 0.97
    assert spread[0] > spread[1] > spread[2], spread


# ------------------------------------------------------------------ bad input
class Uncond(torch.nn.Module):
    def forward(self, x, t, y=None):
        return -x


def test_guidance_on_unconditional_model_raises():
    with pytest.raises(ValueError, match="unconditional"):
        classifier_free_score_fn(Uncond(), 0, w=1.0)


def test_labels_out_of_range_raise():
    sde = VPSDE()
    gm = labelled_gm()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier_free_score_fn(OracleModel(gm, sde), 2, w=1.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        classifier_free_score_fn(OracleModel(gm, sde), torch.tensor([0, -1]), w=1.0)
    with pytest.raises(ValueError, match="labels"):
        classifier_guided_score_fn(gm.score_fn(sde), exact_classifier(gm, sde), 5, num_classes=2)
    score = classifier_guided_score_fn(
        gm.score_fn(sde), exact_classifier(gm, sde), 3
    )  # C from the logits
    with pytest.raises(ValueError, match="classes"):
        score(torch.zeros(2, 2, dtype=D64), torch.full((2,), 0.5, dtype=D64))
    with pytest.raises(TypeError, match="integer"):
        as_labels(torch.tensor([0.5]), 1, 2)
    with pytest.raises(ValueError, match="w must be finite"):
        classifier_free_score_fn(OracleModel(gm, sde), 0, w=float("nan"))
    with pytest.raises(ValueError, match=r"shape \[1\] or \[B\]"):
        classifier_free_score_fn(OracleModel(gm, sde), torch.tensor([0, 1, 1]))(
            torch.zeros(2, 2), torch.ones(2)
        )


def test_model_num_classes_finds_nested_nets():
    from scoresde.nets import build_net
    from scoresde.score import ScoreModel

    sde = VPSDE()
    cond = ScoreModel(
        build_net("mlp", (2,), num_classes=3, hidden=16, num_blocks=1, embed_dim=8), sde
    )
    flat = ScoreModel(
        build_net("mlp", (1, 2, 2), num_classes=4, hidden=16, num_blocks=1, embed_dim=8), sde
    )
    unc = ScoreModel(build_net("mlp", (2,), hidden=16, num_blocks=1, embed_dim=8), sde)
    assert model_num_classes(cond) == 3
    assert model_num_classes(flat) == 4
    assert model_num_classes(unc) is None
    s = classifier_free_score_fn(cond, 2, w=1.5)(torch.zeros(5, 2), torch.full((5,), 0.5))
    assert s.shape == (5, 2) and torch.isfinite(s).all()


# ------------------------------------------------------------------ noisy classifier
def test_noisy_classifier_learns_the_posterior():
    """A briefly trained classifier approaches the Bayes accuracy of the exact p_t(y | x)."""
    torch.manual_seed(0)
    sde = VPSDE()
    gm = labelled_gm().to(torch.float32)
    x, y = gm.sample(4000, generator=torch.Generator().manual_seed(6), return_labels=True)
    clf = NoisyClassifier([2], 2, hidden=32, num_blocks=1, embed_dim=16, sde=sde)
    loss0 = classifier_loss(
        clf, sde, x[:512], y[:512], generator=torch.Generator().manual_seed(0)
    ).item()
    losses = fit_classifier(clf, sde, (x, y), steps=150, batch_size=256, lr=5e-3, seed=0)
    assert sum(losses[-20:]) / 20 < loss0
    xt, yt = gm.sample(2000, generator=torch.Generator().manual_seed(7), return_labels=True)
    for t in (0.05, 0.5):
        g = torch.Generator().manual_seed(8)
        acc = noisy_accuracy(clf, sde, xt, yt, t, generator=g)
        tt = torch.full((2000,), t)
        m, std = sde.marginal_coeffs(tt)
        xn = m[:, None] * xt + std[:, None] * torch.randn(
            xt.shape, generator=torch.Generator().manual_seed(8)
        )
        bayes = (gm.class_log_prob_t(xn, tt, sde).argmax(1) == yt).double().mean().item()
        assert acc > bayes - 0.06, (t, acc, bayes)
    grad = classifier_log_prob_grad(clf, xt[:16], torch.full((16,), 0.3), yt[:16])
    assert grad.shape == (16, 2) and torch.isfinite(grad).all()
