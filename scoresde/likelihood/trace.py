"""Divergence (trace of the Jacobian) estimators for the probability-flow ODE.

For a vector field ``v(x)`` with Jacobian ``J = dv/dx`` and probe vectors ``eps_1..eps_K``,
the vector-Jacobian product ``eps^T J`` costs one backward pass and gives

    div v(x) = tr J = sum_i e_i^T J e_i                         ("exact", D basis vectors)
    div v(x) ~ (1/K) sum_k eps_k^T J eps_k,  E[eps eps^T] = I  (Hutchinson 1989; Grathwohl et al. 2019)

with Rademacher (+-1) or standard Gaussian probes. The Hutchinson probes are drawn once per ODE solve
and held fixed (an adaptive solver needs a deterministic vector field).

Shapes: ``x`` [B, *dims]; probes [K, B, *dims]; estimates [K, B] (one column per probe).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["TRACE_ESTIMATORS", "draw_probes", "exact_divergence", "vjp_quadratic_forms"]

TRACE_ESTIMATORS: tuple[str, ...] = ("exact", "rademacher", "gaussian")

# Exact traces build [chunk, B, *dims] basis tensors; keep each under this many elements.
_EXACT_CHUNK_ELEMENTS = 1 << 24


def draw_probes(
    kind: str, probes: int, x: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Hutchinson probes [probes, B, *dims] like ``x``: Rademacher (+-1) or N(0, I)."""
    shape = (probes, *x.shape)
    if kind == "rademacher":
        bits = torch.randint(0, 2, shape, generator=generator, device=x.device)
        return bits.to(x.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    raise ValueError(f"trace must be one of {TRACE_ESTIMATORS}, got {kind!r}")


def vjp_quadratic_forms(
    out: Tensor, x: Tensor, vectors: Tensor, create_graph: bool, retain_graph: bool = False
) -> Tensor:
    """``v_k^T (d out / d x) v_k`` for each of the K vectors [K, B, *dims]; returns [K, B].

    One backward pass for K = 1; K > 1 uses a vmapped (``is_grads_batched``) backward.
    """
    retain = retain_graph or create_graph
    if vectors.shape[0] == 1:
        (g,) = torch.autograd.grad(
            out, x, vectors[0], create_graph=create_graph, retain_graph=retain
        )
        g = g[None]
    else:
        (g,) = torch.autograd.grad(
            out, x, vectors, create_graph=create_graph, retain_graph=retain, is_grads_batched=True
        )
    return (g * vectors).flatten(2).sum(2)


def exact_divergence(out: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    """tr(d out / d x) per sample, [B], by D vector-Jacobian products with the basis vectors.

    The products are batched (vmapped backward) in chunks; cost ~ D backward passes, so this is
    meant for low dimensions.
    """
    B = x.shape[0]
    D = x[0].numel()
    chunk = max(1, min(D, _EXACT_CHUNK_ELEMENTS // max(1, B * D)))
    eye = torch.eye(D, dtype=x.dtype, device=x.device)
    total = torch.zeros(B, dtype=x.dtype, device=x.device)
    for start in range(0, D, chunk):
        stop = min(D, start + chunk)
        basis = eye[start:stop, None, :].expand(stop - start, B, D).reshape(stop - start, *x.shape)
        last = stop == D
        total = total + vjp_quadratic_forms(
            out, x, basis, create_graph=create_graph, retain_graph=not last
        ).sum(0)
    return total
