"""Randomized traces at the quadrature nodes (``trace="hutchpp"``): shifted Hutch++ or Rademacher
per node, with the probes shared out among the nodes by Neyman allocation.

At node j the divergence is tr J_j, J_j = d f~ / dx at (x(t_j), t_j); only vector-Jacobian
products ``v^T J`` are used (tr J^T = tr J). Per node, with S [D, k] and G Rademacher:

1. sketch: Y = J^T S (k products). Its columns give k Hutchinson samples s^T J s (Hutchinson
   1989), and the shift delta = mean(s^T J s) / D.
2. Hutch++ (Meyer, Musco, Musco & Woodruff 2021, alg. 1) on the shifted matrix J - delta I:
   Q = orth(Y - delta S), then with the projected probes g' = (I - QQ^T) g

       tr J = tr(Q^T J Q) + E[g'^T J g' - delta |g'|^2] + delta (D - k)

   (k + PILOT_RESIDUALS products). The shift is our deviation from the paper: Rademacher probes
   have zero variance on a diagonal Jacobian, projected ones do not, and -1/std^2 I (the score's
   Jacobian near a mode) would otherwise dominate the residual.
3. per node, the estimator (Rademacher or shifted Hutch++) whose batch-mean pilot variance is
   smaller is kept, and ``probes`` further probes of it are shared out among the nodes in
   proportion to w_j sd_j (Neyman allocation: it minimizes sum_j w_j^2 sd_j^2 / n_j for a fixed
   total sum_j n_j).

Each node's mean and variance come from its samples (>= 2 each); the rule's variance is
sum_j w_j^2 var_j / n_j, independent across nodes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from scoresde.likelihood.trace import draw_probes

__all__ = ["HUTCHPP_SKETCH", "PILOT_RESIDUALS", "hutchpp_node_traces"]

HUTCHPP_SKETCH = 2  # k: sketch columns per node (the 64-D mixture: k = 2 beat 3, 4, 6, 8)
PILOT_RESIDUALS = 2  # projected residual probes per node in the pilot (>= 2: a variance)


def _vjps(out: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """v_a^T (d out / dx) for the rows of v [m, B, *dims], keeping the graph; [m, B, D]."""
    (g,) = torch.autograd.grad(out, x, v, retain_graph=True, is_grads_batched=True)
    return g.flatten(2)


class _Node:
    """One node's graph, pilot samples and chosen estimator."""

    def __init__(self, out: Tensor, x: Tensor, generator: torch.Generator | None):
        self.out, self.x, self.gen = out, x, generator
        D = x[0].numel()
        k = min(HUTCHPP_SKETCH, D)
        S = draw_probes("rademacher", k, x, generator)
        Y = _vjps(out, x, S)  # [k, B, D]
        Sf = S.flatten(2)
        self.rad = (Sf * Y).sum(2)  # [k, B] Hutchinson samples
        self.delta = self.rad.mean(0) / D  # [B]
        Yp = (Y - self.delta[None, :, None] * Sf).permute(1, 2, 0)  # [B, D, k]
        self.Q = torch.linalg.qr(Yp).Q  # [B, D, k]
        Qv = self.Q.permute(2, 0, 1)  # [k, B, D]
        G = self._projected(PILOT_RESIDUALS)
        W = _vjps(out, x, torch.cat([Qv, G]).reshape(-1, *x.shape))
        self.tQ = (Qv * W[:k]).sum((0, 2))  # tr(Q^T J Q) [B]
        self.k, self.D = k, D
        self.hpp = self._residual_samples(G, W[k:])  # [m, B]
        self.use_hpp = bool(self.hpp.var(0).mean() < self.rad.var(0).mean())
        self.samples = self.hpp if self.use_hpp else self.rad

    def _projected(self, m: int) -> Tensor:
        G = draw_probes("rademacher", m, self.x, self.gen).flatten(2)  # [m, B, D]
        return G - torch.einsum("bdk,mbk->mbd", self.Q, torch.einsum("bdk,mbd->mbk", self.Q, G))

    def _residual_samples(self, G: Tensor, W: Tensor) -> Tensor:
        """tr(Q^T J Q) + g'^T J g' - delta |g'|^2 + delta (D - k), per projected probe g'."""
        quad = (G * W).sum(2) - self.delta * G.pow(2).sum(2)
        return self.tQ + quad + self.delta * (self.D - self.k)

    def sd(self) -> float:
        return float(self.samples.var(0).mean().sqrt())

    def add(self, m: int) -> None:
        if m <= 0:
            return
        if self.use_hpp:
            G = self._projected(m)
            W = _vjps(self.out, self.x, G.reshape(-1, *self.x.shape))
            new = self._residual_samples(G, W)
        else:
            v = draw_probes("rademacher", m, self.x, self.gen)
            new = (v.flatten(2) * _vjps(self.out, self.x, v)).sum(2)
        self.samples = torch.cat([self.samples, new])


def _neyman(budget: int, scores: list[float]) -> list[int]:
    """Split ``budget`` integers in proportion to ``scores`` (largest remainders)."""
    total = sum(scores)
    if total <= 0:
        return [0] * len(scores)
    raw = [budget * s / total for s in scores]
    out = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: out[i] - raw[i])[: budget - sum(out)]:
        out[i] += 1
    return out


def hutchpp_node_traces(
    graphs: list[tuple[Tensor, Tensor]],
    weights: Tensor,
    probes: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Divergence estimates [n+1, B] and their variances [n+1, B] at the nodes.

    ``graphs``: (drift, x) per node, x requiring grad; ``weights``: the rule's w_j [n+1];
    ``probes``: samples shared out among the nodes after the pilot (module docstring).
    """
    nodes = [_Node(out, x, generator) for out, x in graphs]
    scores = [abs(float(w)) * node.sd() for w, node in zip(weights, nodes, strict=True)]
    for node, m in zip(nodes, _neyman(probes, scores), strict=True):
        node.add(m)
    mean = torch.stack([node.samples.mean(0) for node in nodes])
    var = torch.stack([node.samples.var(0) / node.samples.shape[0] for node in nodes])
    return mean.detach(), var.detach()
