"""Randomized traces at the quadrature nodes (``trace="hutchpp"``): Rademacher everywhere,
sketched estimators where the Rademacher variance matters, probes shared out by Neyman allocation.

At node j the divergence is tr J_j, J_j = d f~ / dx at (x(t_j), t_j); only vector-Jacobian
products ``v^T J`` are used (tr J^T = tr J); all probes are Rademacher. Per node:

1. pilot: PILOT probes s, giving Hutchinson samples s^T J s (Hutchinson 1989) and the score
   c_j = |w_j| sd_j (w_j the rule's weight). Near eps the score's Jacobian is almost diagonal,
   where Rademacher probes are nearly exact: nodes with c_j < PILOT_SHARE max_j c_j stop here.
2. sketch (the other nodes): the pilot's products plus k - PILOT new ones give Y = J^T S
   (k = HUTCHPP_SKETCH), the shift delta = mean(s^T J s) / D, Q = orth(Y - delta S) [D, k] and
   C = Q^T J Q (k more products). Then PILOT samples of each of
   - shifted Hutch++ (Meyer, Musco, Musco & Woodruff 2021, alg. 1, on J - delta I), with the
     projected probes g' = (I - QQ^T) g:
         tr J = tr C + E[g'^T J g' - delta |g'|^2] + delta (D - k);
   - deflated Hutchinson, the control variate M = Q (C - delta I) Q^T + delta I:
         tr J = tr C - k delta + E[g^T J g - (Q^T g)^T (C - delta I) (Q^T g)];
   and the node keeps the one of the three (with Rademacher) of smallest batch-mean pilot
   variance. Both identities hold for any Q independent of g. The shift is our deviation from
   the paper: Rademacher probes have zero variance on a diagonal Jacobian, projected ones do not,
   and -1/std^2 I (the score's Jacobian near a mode) would otherwise dominate the residual; the
   deflated form leaves the diagonal to the unprojected probes (on the 64-D mixture it wins at
   mid t, Hutch++ near T).
3. ``probes`` further samples are shared out among the nodes in proportion to |w_j| sd_j (Neyman
   allocation: it minimizes sum_j w_j^2 sd_j^2 / n_j for a fixed total sum_j n_j). A sketched
   node's graph is held from its sketch to its last products (5-7 graphs on the 64-D mixture);
   the others are dropped after the pilot and rebuilt (one drift evaluation) only if needed.

Each node's mean and variance come from its samples (>= PILOT each); the rule's variance is
sum_j w_j^2 var_j / n_j, independent across nodes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from scoresde.likelihood.trace import draw_probes, vjp_chunk

__all__ = ["HUTCHPP_SKETCH", "PILOT", "PILOT_SHARE", "hutchpp_node_traces"]

HUTCHPP_SKETCH = 4  # k: sketch columns per sketched node (64-D mixture: 4 beat 2 and 3)
PILOT = 2  # pilot probes per node, Rademacher and projected (>= 2: a variance)
PILOT_SHARE = 0.05  # Hutch++ pilot where |w_j| sd_j >= PILOT_SHARE * max (64-D mixture)

NodeGraph = Callable[[int], tuple[Tensor, Tensor]]


def _vjps(out: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """v_a^T (d out / dx) for the rows of v [m, B, *dims], keeping the graph; [m, B, D]
    (cache-sized chunks of rows per vmapped backward)."""
    chunk = vjp_chunk(x)
    parts = [
        torch.autograd.grad(out, x, v[i : i + chunk], retain_graph=True, is_grads_batched=True)[0]
        for i in range(0, v.shape[0], chunk)
    ]
    return torch.cat(parts).flatten(2)


class _Node:
    """One node's pilot samples and chosen estimator (the graph is passed in, never kept)."""

    def __init__(self, out: Tensor, x: Tensor, generator: torch.Generator | None):
        self.gen, self.shape = generator, x.shape
        self.D = x[0].numel()
        self.S = draw_probes("rademacher", PILOT, x, generator)
        self.Y = _vjps(out, x, self.S)  # [PILOT, B, D]
        self.samples = (self.S.flatten(2) * self.Y).sum(2)  # [PILOT, B] Hutchinson samples
        self.kind = "rademacher"

    def pilot_sketched(self, out: Tensor, x: Tensor) -> None:
        """Sketch, shift, tr(Q^T J Q) and pilots of both sketched estimators; keep the estimator
        (of the three) with the smallest batch-mean pilot variance."""
        k = min(HUTCHPP_SKETCH, self.D)
        S = draw_probes("rademacher", k - PILOT, x, self.gen) if k > PILOT else self.S[:0]
        Sf = torch.cat([self.S, S]).flatten(2)[:k]  # [k, B, D]
        Y = torch.cat([self.Y, _vjps(out, x, S)])[:k] if k > PILOT else self.Y[:k]
        self.delta = (Sf * Y).sum(2).mean(0) / self.D  # [B]
        self.Q = torch.linalg.qr((Y - self.delta[None, :, None] * Sf).permute(1, 2, 0)).Q
        Qv = self.Q.permute(2, 0, 1)  # [k, B, D]
        W = _vjps(out, x, Qv.reshape(-1, *x.shape))  # rows q_a^T J
        self.QJQ = torch.einsum("abd,bdc->bac", W, self.Q)  # Q^T J Q [B, k, k]
        self.tQ = self.QJQ.diagonal(dim1=1, dim2=2).sum(1)  # [B]
        self.k = k
        best = self.samples.var(0).mean()
        for kind in ("hutchpp", "deflated"):
            pilot = self._draw(kind, out, x, PILOT)
            if pilot.var(0).mean() < best:
                self.kind, self.samples, best = kind, pilot, pilot.var(0).mean()

    def _draw(self, kind: str, out: Tensor, x: Tensor, m: int) -> Tensor:
        """m samples [m, B] of the node's trace by estimator ``kind`` (module docstring)."""
        G = draw_probes("rademacher", m, x, self.gen).flatten(2)  # [m, B, D]
        QtG = torch.einsum("bdk,mbd->mbk", self.Q, G) if kind != "rademacher" else None
        if kind == "hutchpp":  # g' = (I - QQ^T) g
            G = G - torch.einsum("bdk,mbk->mbd", self.Q, QtG)
        quad = (G * _vjps(out, x, G.reshape(-1, *self.shape))).sum(2)  # g^T J g
        if kind == "rademacher":
            return quad
        if kind == "hutchpp":
            quad = quad - self.delta * G.pow(2).sum(2)
            return self.tQ + quad + self.delta * (self.D - self.k)
        eye = torch.eye(self.k, dtype=G.dtype, device=G.device)
        M = self.QJQ - self.delta[:, None, None] * eye  # Q^T J Q - delta I
        return quad - torch.einsum("mbk,bkl,mbl->mb", QtG, M, QtG) + self.tQ - self.k * self.delta

    def score(self, w: float) -> float:
        return abs(w) * float(self.samples.var(0).mean().sqrt())

    def add(self, out: Tensor, x: Tensor, m: int) -> None:
        self.samples = torch.cat([self.samples, self._draw(self.kind, out, x, m)])


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
    node_graph: NodeGraph,
    weights: Tensor,
    probes: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Divergence estimates [n+1, B] and their variances [n+1, B] at the nodes.

    ``node_graph(j)``: (drift, x) at node j, x requiring grad (called once per node, and again
    for the nodes that get more probes); ``weights``: the rule's w_j [n+1]; ``probes``: samples
    shared out among the nodes after the pilots (module docstring).
    """
    w = [float(v) for v in weights]
    nodes = []
    for j in range(len(w)):
        out, x = node_graph(j)
        nodes.append(_Node(out, x, generator))
        del out, x
    rad = [node.score(wj) for node, wj in zip(nodes, w, strict=True)]
    top, graphs = max(rad), {}
    for j, node in enumerate(nodes):
        if top > 0 and rad[j] >= PILOT_SHARE * top:
            graphs[j] = node_graph(j)  # held until its last products (the sketched nodes only)
            node.pilot_sketched(*graphs[j])
        node.Y = None  # the sketch's products are no longer needed
    scores = [node.score(wj) for node, wj in zip(nodes, w, strict=True)]
    for j, m in enumerate(_neyman(probes, scores)):
        graph = graphs.pop(j, None)
        if m > 0:
            nodes[j].add(*(graph or node_graph(j)), m)
        del graph
    mean = torch.stack([node.samples.mean(0) for node in nodes])
    var = torch.stack([node.samples.var(0) / node.samples.shape[0] for node in nodes])
    return mean.detach(), var.detach()
