"""Guided score functions for class-conditional sampling.

Both constructions return a plain ``score_fn(x, t)`` (x ``[B, *dims]``, t ``[B]``), so every sampler
(and the likelihood ODE) can use them unchanged.

* Classifier-free guidance (Ho & Salimans 2022): with a model trained with label dropout,
  ``s_w(x, t, y) = (1 + w) s(x, t, y) - w s(x, t)``. ``w = 0`` is the conditional score,
  ``w = -1`` the unconditional one; ``w > 0`` targets p_t(x | y) p_t(y | x)^w, i.e. sharpens the
  class-conditional distribution towards points the implicit classifier finds most typical of y.
* Classifier guidance (Dhariwal & Nichol 2021; Song et al. 2021, section 5 / eq. 14):
  ``s(x, t) + scale * grad_x log p_t(y | x)`` with a time-dependent noisy classifier
  ``classifier(x, t) -> logits [B, C]`` differentiated by autograd. ``scale = 1`` is exact Bayes,
  ``grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x)``; ``scale > 1`` sharpens the
  same way as ``w = scale - 1`` in classifier-free guidance.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from scoresde.sde import ScoreFn

__all__ = [
    "LabelLike",
    "as_labels",
    "classifier_free_score_fn",
    "classifier_guided_score_fn",
    "classifier_log_prob_grad",
    "combine_guided_scores",
    "model_num_classes",
]

LabelLike = int | Tensor
Classifier = Callable[[Tensor, Tensor], Tensor]


def model_num_classes(model: object) -> int | None:
    """Number of classes a (score) model is conditioned on, or None for an unconditional model.

    Looks for ``num_classes`` on the object, on ``model.net`` (a ScoreModel's network), then on any
    submodule of an ``nn.Module`` (e.g. a FlatMLP's inner MLP).
    """
    for obj in (model, getattr(model, "net", None)):
        n = getattr(obj, "num_classes", None) if obj is not None else None
        if n is not None:
            return int(n)
    if isinstance(model, torch.nn.Module):
        for mod in model.modules():
            n = getattr(mod, "num_classes", None)
            if isinstance(n, int) and not isinstance(n, bool):
                return n
    return None


def as_labels(y: LabelLike, batch: int, num_classes: int | None, device=None) -> Tensor:
    """Validate class labels and broadcast them to shape ``[batch]`` (long).

    Args:
        y: an int, a 0-d tensor, or a ``[1]`` / ``[batch]`` integer tensor.
        batch: batch size B.
        num_classes: C; labels must lie in ``[0, C)``. ``None`` skips the range check.
    """
    if isinstance(y, bool):
        raise TypeError(f"y must be an int or an integer tensor, got {y!r}")
    y = torch.as_tensor(y, device=device)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
    y = y.reshape(-1).long()
    if y.shape[0] == 1:
        y = y.expand(batch)
    if y.shape[0] != batch:
        raise ValueError(
            f"y must be an int or have shape [1] or [B] = [{batch}], got {y.shape[0]} labels"
        )
    if num_classes is not None and ((y < 0).any() or (y >= num_classes).any()):
        raise ValueError(
            f"labels y must lie in [0, {num_classes - 1}] (num_classes={num_classes}), "
            f"got {y.tolist()[:8]}"
        )
    return y


def _check_scale(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def combine_guided_scores(cond_score_fn: ScoreFn, uncond_score_fn: ScoreFn, w: float) -> ScoreFn:
    """Classifier-free combination of two score functions.

    ``(1 + w) s_cond(x, t) - w s_uncond(x, t)``. Use this with any pair of callables, e.g. an
    oracle's ``score_fn(sde, y)`` and ``score_fn(sde)``. ``w = 0`` evaluates only
    ``cond_score_fn`` (one score evaluation per call).
    """
    w = _check_scale("w", w)

    def score(x: Tensor, t: Tensor) -> Tensor:
        s_cond = cond_score_fn(x, t)
        if w == 0.0:
            return s_cond
        return (1.0 + w) * s_cond - w * uncond_score_fn(x, t)

    return score


def classifier_free_score_fn(
    model: Callable[..., Tensor], y: LabelLike, w: float = 0.0, num_classes: int | None = None
) -> ScoreFn:
    """Classifier-free guided score of a label-conditional model ``model(x, t, y=None) -> score``.

    ``s_w(x, t) = (1 + w) model(x, t, y) - w model(x, t, None)`` (Ho & Salimans 2022, eq. 6 in score
    form); ``y=None`` is the model's null label, learned with ``training.label_dropout > 0``.
    Labels ``y`` (int or ``[B]``) are broadcast to each batch and checked against
    ``num_classes`` (default: read from the model). A model without classes raises ValueError.
    Costs two model evaluations per call when w != 0 (one when w == 0).
    """
    w = _check_scale("w", w)
    if num_classes is None:
        num_classes = model_num_classes(model)
    if num_classes is None:
        raise ValueError(
            "classifier-free guidance needs a class-conditional model (num_classes set); "
            "this model is unconditional: train it with model.num_classes and "
            "training.label_dropout > 0"
        )
    as_labels(y, max(torch.as_tensor(y).numel(), 1), num_classes)  # validate up front

    def score(x: Tensor, t: Tensor) -> Tensor:
        yy = as_labels(y, x.shape[0], num_classes, device=x.device)
        s_cond = model(x, t, y=yy)
        if w == 0.0:
            return s_cond
        s_uncond = model(x, t, y=None)
        return (1.0 + w) * s_cond - w * s_uncond

    return score


def classifier_log_prob_grad(classifier: Classifier, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
    """``grad_x log p_t(y | x)`` by autograd through ``classifier(x, t) -> logits [B, C]``.

    ``log p_t(y | x) = log_softmax(logits)[y]``; samples do not interact, so the gradient of the sum
    over the batch gives every sample's own gradient. Works inside ``torch.no_grad()`` contexts.
    """
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        logits = classifier(xg, t)
        if logits.dim() != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"classifier must return logits [B, C] with B = {x.shape[0]}, "
                f"got {tuple(logits.shape)}"
            )
        C = logits.shape[1]
        if (y < 0).any() or (y >= C).any():
            raise ValueError(f"labels y must lie in [0, {C - 1}] for a classifier with {C} classes")
        logp = torch.log_softmax(logits, dim=1).gather(1, y.reshape(-1, 1).long()).sum()
        (grad,) = torch.autograd.grad(logp, xg)
    return grad.detach()


def classifier_guided_score_fn(
    score_fn: ScoreFn,
    classifier: Classifier,
    y: LabelLike,
    scale: float = 1.0,
    num_classes: int | None = None,
) -> ScoreFn:
    """``s(x, t) + scale * grad_x log p_t(y | x)``.

    Classifier guidance (Dhariwal & Nichol 2021; Song et al. 2021, eq. 14).

    Args:
        score_fn: unconditional score ``score_fn(x, t)``.
        classifier: time-dependent classifier ``classifier(x, t) -> logits [B, C]`` trained on the
            same SDE's marginals p_t (see ``scoresde.training.classifier``). An exact oracle
            works too: ``lambda x, t: gm.class_log_prob_t(x, t, sde)`` (log-probabilities are
            valid logits).
        y: target labels, an int or ``[B]``; checked against ``num_classes`` (default: the
            classifier's ``num_classes`` attribute, when it has one).
        scale: guidance scale; 1 targets p_t(x | y) exactly.
    """
    scale = _check_scale("scale", scale)
    if num_classes is None:
        num_classes = getattr(classifier, "num_classes", None)
    y_t = torch.as_tensor(y)
    as_labels(y, max(y_t.numel(), 1), num_classes)  # validate up front

    def score(x: Tensor, t: Tensor) -> Tensor:
        yy = as_labels(y, x.shape[0], num_classes, device=x.device)
        s = score_fn(x, t)
        if scale == 0.0:
            return s
        t_b = t if t.dim() else t.expand(x.shape[0])
        return s + scale * classifier_log_prob_grad(classifier, x, t_b, yy)

    return score
