"""Gaussian-mixture oracle: exact densities and scores of p_t under any linear SDE.

For a data distribution p_0 = sum_k w_k N(mu_k, diag(s_k^2)) and a perturbation kernel
p_{0t}(x_t | x_0) = N(m(t) x_0, std(t)^2 I), the marginal is again a mixture (Song et al. 2021,
appendix; the Gaussian convolution identity):

    p_t(x) = sum_k w_k N(x; m(t) mu_k, m(t)^2 diag(s_k^2) + std(t)^2 I),

whose score is the responsibility-weighted sum of the component scores
-(x - m(t) mu_k) / var_k(t). Samplers and likelihoods are tested against these exact values.
Components may carry class labels, giving the exact p_t(y | x) and class-conditional scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from scoresde.sde import SDE, ScoreFn

__all__ = ["GaussianMixture"]

ArrayLike = Tensor | Sequence


class GaussianMixture:
    """Mixture of K diagonal Gaussians on event shape ``dims`` (flattened to D internally).

    Args:
        weights: [K] non-negative mixture weights (normalized here).
        means: [K, *dims] component means.
        stds: component standard deviations, [K, *dims], [K] or a scalar (all > 0).
        labels: optional [K] integer class of each component (for conditional generation).
    """

    def __init__(
        self,
        weights: ArrayLike,
        means: ArrayLike,
        stds: ArrayLike | float,
        labels: ArrayLike | None = None,
    ):
        means = torch.as_tensor(means)
        if not means.is_floating_point():
            means = means.to(torch.get_default_dtype())
        if means.dim() < 2:
            raise ValueError(f"means must have shape [K, *dims], got {tuple(means.shape)}")
        dtype, device = means.dtype, means.device
        K = means.shape[0]
        weights = torch.as_tensor(weights, dtype=dtype, device=device).reshape(-1)
        if weights.shape[0] != K:
            raise ValueError(f"weights must have shape [K] = [{K}], got {tuple(weights.shape)}")
        if (weights < 0).any() or not weights.sum() > 0:
            raise ValueError("weights must be non-negative with a positive sum")
        self.event_shape = tuple(means.shape[1:])
        D = means[0].numel()
        stds = torch.as_tensor(stds, dtype=dtype, device=device)
        if stds.dim() == 0:
            stds = stds.expand(K, D)
        elif stds.dim() == 1 and stds.shape[0] == K:
            stds = stds[:, None].expand(K, D)
        elif stds.shape == means.shape:
            stds = stds.reshape(K, D)
        else:
            raise ValueError(
                f"stds must be a scalar, [K] or [K, *dims] = {tuple(means.shape)}, "
                f"got {tuple(stds.shape)}"
            )
        if not (stds > 0).all():
            raise ValueError("stds must all be > 0")
        self.weights = weights / weights.sum()
        self.means = means.reshape(K, D)
        self.stds = stds.contiguous()
        self.labels = None
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
            if labels.shape[0] != K:
                raise ValueError(f"labels must have shape [K] = [{K}], got {tuple(labels.shape)}")
            if (labels < 0).any():
                raise ValueError("labels must be >= 0")
            self.labels = labels

    # ------------------------------------------------------------------ basics
    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def num_classes(self) -> int:
        if self.labels is None:
            raise ValueError("this mixture has no labels")
        return int(self.labels.max()) + 1

    def to(self, dtype: torch.dtype | None = None, device=None) -> GaussianMixture:
        """A copy with parameters in ``dtype`` / on ``device``."""
        gm = GaussianMixture.__new__(GaussianMixture)
        gm.event_shape = self.event_shape
        gm.weights = self.weights.to(dtype=dtype, device=device)
        gm.means = self.means.to(dtype=dtype, device=device)
        gm.stds = self.stds.to(dtype=dtype, device=device)
        gm.labels = None if self.labels is None else self.labels.to(device=device)
        return gm

    def mean(self) -> Tensor:
        """E[x], shape dims."""
        return (self.weights[:, None] * self.means).sum(0).reshape(self.event_shape)

    def covariance(self) -> Tensor:
        """Cov[x] as a [D, D] matrix."""
        mu = (self.weights[:, None] * self.means).sum(0)
        second = torch.diag_embed(self.stds**2) + self.means[:, :, None] * self.means[:, None, :]
        return (self.weights[:, None, None] * second).sum(0) - mu[:, None] * mu[None, :]

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        return_labels: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Draw ``n`` samples [n, *dims] from p_0 (and their class labels if asked)."""
        dev = self.means.device
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype, device=dev)
        x = (self.means[comp] + self.stds[comp] * z).reshape(n, *self.event_shape)
        if return_labels:
            if self.labels is None:
                raise ValueError("return_labels=True needs a mixture with labels")
            return x, self.labels[comp]
        return x

    # ------------------------------------------------------------------ exact densities
    def _coeffs(self, x: Tensor, t: Tensor | None, sde: SDE | None) -> tuple[Tensor, Tensor]:
        B = x.shape[0]
        if sde is None:
            one = torch.ones(B, dtype=x.dtype, device=x.device)
            return one, torch.zeros_like(one)
        if not isinstance(t, Tensor):
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        t = t.to(dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.expand(B)
        return sde.marginal_coeffs(t)

    def _component_terms(self, x: Tensor, t, sde) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component terms at ``x``.

        Returns log-densities [B, K], centred x - m mu_k [B, K, D] and variances [B, K, D].
        """
        xf = x.reshape(x.shape[0], -1)
        if xf.shape[1] != self.dim:
            raise ValueError(
                f"x must have {self.dim} features per sample, got shape {tuple(x.shape)}"
            )
        m, std = self._coeffs(x, t, sde)
        means = self.means.to(xf)
        var = (
            m[:, None, None] ** 2 * self.stds.to(xf)[None] ** 2 + std[:, None, None] ** 2
        )  # [B,K,D]
        diff = xf[:, None, :] - m[:, None, None] * means[None]
        logn = -0.5 * ((diff**2 / var) + torch.log(2 * math.pi * var)).sum(-1)
        return logn, diff, var

    def component_log_joint_t(
        self, x: Tensor, t: Tensor | None = None, sde: SDE | None = None
    ) -> Tensor:
        """log w_k + log N_k(x; t), shape [B, K]."""
        logn, _, _ = self._component_terms(x, t, sde)
        return logn + torch.log(self.weights.to(logn))[None]

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log p_0(x), shape [B]."""
        return torch.logsumexp(self.component_log_joint_t(x), dim=1)

    def log_prob_t(self, x: Tensor, t: Tensor, sde: SDE) -> Tensor:
        """Exact log p_t(x) of the marginal at time t under ``sde``, shape [B]."""
        return torch.logsumexp(self.component_log_joint_t(x, t, sde), dim=1)

    def score_t(self, x: Tensor, t: Tensor, sde: SDE, y: Tensor | None = None) -> Tensor:
        """Exact grad_x log p_t(x) (or of p_t(x | y) when class labels ``y`` [B] are given)."""
        logn, diff, var = self._component_terms(x, t, sde)
        logj = logn + torch.log(self.weights.to(logn))[None]
        if y is not None:
            logj = logj.masked_fill(~self._class_mask(y, x.shape[0]), -math.inf)
        resp = torch.softmax(logj, dim=1)  # [B, K]
        score = -(resp[:, :, None] * diff / var).sum(1)
        return score.reshape(x.shape)

    def score_fn(self, sde: SDE, y: Tensor | None = None) -> ScoreFn:
        """``score_fn(x, t)`` returning the exact score of p_t under ``sde``.

        With ``y`` given, the score is that of p_t(. | y).
        """

        def score(x: Tensor, t: Tensor) -> Tensor:
            return self.score_t(x, t, sde, y=y)

        return score

    # ------------------------------------------------------------------ classes
    def _class_mask(self, y: Tensor, B: int) -> Tensor:
        if self.labels is None:
            raise ValueError("class-conditional quantities need a mixture with labels")
        y = torch.as_tensor(y, device=self.labels.device).reshape(-1)
        if y.shape[0] == 1:
            y = y.expand(B)
        if y.shape[0] != B:
            raise ValueError(f"y must have shape [B] = [{B}], got {tuple(y.shape)}")
        if (y < 0).any() or (y >= self.num_classes).any():
            raise ValueError(f"labels y must lie in [0, {self.num_classes - 1}]")
        return self.labels[None, :] == y[:, None]

    def class_log_prob_t(
        self, x: Tensor, t: Tensor | None = None, sde: SDE | None = None
    ) -> Tensor:
        """Exact log p_t(y | x) for every class, shape [B, C] (t, sde omitted: at t = 0)."""
        if self.labels is None:
            raise ValueError("class_log_prob_t needs a mixture with labels")
        logj = self.component_log_joint_t(x, t, sde)
        C = self.num_classes
        per_class = torch.full((x.shape[0], C), -math.inf, dtype=logj.dtype, device=logj.device)
        for c in range(C):
            sel = self.labels == c
            if sel.any():
                per_class[:, c] = torch.logsumexp(logj[:, sel], dim=1)
        return per_class - torch.logsumexp(logj, dim=1, keepdim=True)

    def conditional(self, y: int) -> GaussianMixture:
        """The class-conditional mixture p_0(x | y) (components of class y, renormalized)."""
        if self.labels is None:
            raise ValueError("conditional needs a mixture with labels")
        if not 0 <= int(y) < self.num_classes:
            raise ValueError(f"y must lie in [0, {self.num_classes - 1}], got {y}")
        sel = self.labels == int(y)
        return GaussianMixture(
            self.weights[sel],
            self.means[sel].reshape(-1, *self.event_shape),
            self.stds[sel].reshape(-1, *self.event_shape),
            labels=self.labels[sel],
        )
