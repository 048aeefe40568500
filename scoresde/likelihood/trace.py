"""Divergence (trace of the Jacobian) estimators for the probability-flow ODE.

For a vector field ``v(x)`` with Jacobian ``J = dv/dx`` and probe vectors ``eps_1..eps_K``,
the vector-Jacobian product ``eps^T J`` costs one backward pass and gives

    div v(x) = tr J = sum_i e_i^T J e_i                         ("exact", D basis vectors)
    div v(x) ~ (1/K) sum_k eps_k^T J eps_k,  E[eps eps^T] = I
                                      (Hutchinson 1989; Grathwohl et al. 2019)

with Rademacher (+-1) or standard Gaussian probes.

- ``"rademacher"`` / ``"gaussian"``: the probes are drawn once per ODE solve and held fixed, so the
  augmented vector field is deterministic and the divergence column takes part in the solver's
  error control (FFJORD's choice). One probe's error is then the same draw at every time.
- ``"quadrature"``: the divergence integral taken apart from the solve, by a Clenshaw-Curtis rule
  in log std(t) with exact traces at the nodes (:mod:`scoresde.likelihood.quadrature`).
- ``"hutchpp"``: the same rule with randomized traces at the nodes: Rademacher or a Hutch++-style
  sketched control variate (the sketch taken of J minus its estimated diagonal) per node, probes
  shared out by Neyman allocation (:mod:`scoresde.likelihood.hutchpp`).
- ``"resampled"``: K fresh Rademacher probes at *every* function evaluation. The divergence never
  feeds back into ``x``, so it is excluded from the error norm and the solver integrates it as a
  pure quadrature ``sum_i c_i q_i`` (c_i = step size x Runge-Kutta weight of evaluation i) with
  independent errors across evaluations: at the same cost the variance falls by the number of
  effectively independent evaluations. Its standard error is estimated without knowing c_i: each
  evaluation also emits ``r_im sqrt(s_i^2 / K)`` for M random signs ``r_im`` (s_i^2 the sample
  variance over the K probes); the solver integrates them to ``V_m = sum_i c_i r_im sqrt(...)``
  and E[mean_m V_m^2] = sum_i c_i^2 Var(q_i), the variance of the estimate.

Shapes: ``x`` [B, *dims]; probes [K, B, *dims]; estimates [K, B] (one column per probe).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "FIXED_PROBE_TRACES",
    "QUADRATURE_TRACES",
    "TRACE_ESTIMATORS",
    "VARIANCE_SIGNS",
    "default_probes",
    "draw_probes",
    "exact_divergence",
    "resampled_divergence",
    "resampled_stderr",
    "vector_jacobian_products",
    "vjp_quadratic_forms",
]

FIXED_PROBE_TRACES: tuple[str, ...] = ("rademacher", "gaussian")
QUADRATURE_TRACES: tuple[str, ...] = ("quadrature", "hutchpp")  # x-only solve, then a rule
TRACE_ESTIMATORS: tuple[str, ...] = ("exact", *FIXED_PROBE_TRACES, "resampled", *QUADRATURE_TRACES)
VARIANCE_SIGNS = 32  # M sign columns of the "resampled" standard error (M-dof variance estimate)

# Exact traces build [chunk, B, *dims] basis tensors; keep each under this many elements. On CPU
# small chunks stay in cache: one [512, 64] vector per backward took 57-68 ms per exact trace
# against 80 ms for 4 and ~5x that for 64; at [512, 16] 16 per backward (5.4 ms) beat 4 (7.4 ms).
_EXACT_CHUNK_ELEMENTS = {"cpu": 1 << 15}
_EXACT_CHUNK_ELEMENTS_ACCELERATOR = 1 << 24


DEFAULT_PROBES: dict[str, int] = {  # probes=None per trace (the others: 1)
    "hutchpp": 30,  # 13 nodes, 64-D mixture: 8.1e-4 - 9.5e-4 nats/dim over 8 probe seeds
}


def default_probes(trace: str) -> int:
    """What ``probes=None`` means for ``trace``: DEFAULT_PROBES[trace], else 1."""
    return DEFAULT_PROBES.get(trace, 1)


def draw_probes(
    kind: str, probes: int, x: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Hutchinson probes [probes, B, *dims] like ``x``: Rademacher (+-1) or N(0, I)."""
    shape = (probes, *x.shape)
    if kind in ("rademacher", "resampled"):  # 8 probes' signs from each random byte
        n_bytes = -(-probes // 8)
        kw = {"generator": generator, "device": x.device, "dtype": torch.uint8}
        packed = torch.randint(0, 256, (n_bytes, *x.shape), **kw)
        shifts = torch.arange(8, dtype=torch.uint8, device=x.device).view(8, *[1] * packed.dim())
        bits = ((packed[None] >> shifts) & 1).reshape(8 * n_bytes, *x.shape)[:probes]
        return bits.to(x.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)
    raise ValueError(f"trace must be one of {TRACE_ESTIMATORS}, got {kind!r}")


def vector_jacobian_products(
    out: Tensor, x: Tensor, vectors: Tensor, create_graph: bool = False, retain_graph: bool = False
) -> Tensor:
    """``v_k^T (d out / d x)`` for each of the K vectors [K, B, *dims]; returns [K, B, *dims].

    One backward pass for K = 1; K > 1 uses a vmapped (``is_grads_batched``) backward.
    """
    kw = {"create_graph": create_graph, "retain_graph": retain_graph or create_graph}
    if vectors.shape[0] == 1:
        return torch.autograd.grad(out, x, vectors[0], **kw)[0][None]
    return torch.autograd.grad(out, x, vectors, is_grads_batched=True, **kw)[0]


def vjp_quadratic_forms(
    out: Tensor, x: Tensor, vectors: Tensor, create_graph: bool, retain_graph: bool = False
) -> Tensor:
    """``v_k^T (d out / d x) v_k`` for each of the K vectors [K, B, *dims]; returns [K, B]."""
    g = vector_jacobian_products(out, x, vectors, create_graph, retain_graph)
    return (g * vectors).flatten(2).sum(2)


def vjp_chunk(x: Tensor) -> int:
    """Vectors per vmapped backward for ``x`` [B, *dims]: [chunk, B, D] products stay in cache
    (on CPU 1 at B = 512, D = 64 and 4 at D = 16: see _EXACT_CHUNK_ELEMENTS)."""
    budget = _EXACT_CHUNK_ELEMENTS.get(x.device.type, _EXACT_CHUNK_ELEMENTS_ACCELERATOR)
    return max(1, budget // max(1, x.numel()))


def exact_divergence(out: Tensor, x: Tensor, create_graph: bool) -> Tensor:
    """tr(d out / d x) per sample, [B], by D vector-Jacobian products with the basis vectors.

    The products are batched (vmapped backward) in chunks; cost ~ D backward passes, so this is
    meant for low dimensions.
    """
    B = x.shape[0]
    D = x[0].numel()
    chunk = min(D, vjp_chunk(x))
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


def resampled_divergence(
    out: Tensor, x: Tensor, probes: int, generator: torch.Generator | None, create_graph: bool
) -> Tensor:
    """Columns [B, 1 + M]: the mean of K fresh Rademacher estimates, then M = VARIANCE_SIGNS
    sign-randomized square roots of its variance estimate (zero for K = 1; module docstring)."""
    v = draw_probes("resampled", probes, x, generator)
    q = vjp_quadratic_forms(out, x, v, create_graph=create_graph)  # [K, B]
    mean = q.mean(0)
    if probes > 1:
        sd = (q.var(0) / probes).sqrt()
    else:
        sd = torch.zeros_like(mean)
    signs = torch.randint(0, 2, (x.shape[0], VARIANCE_SIGNS), generator=generator, device=x.device)
    return torch.cat([mean[:, None], (signs.to(x.dtype) * 2 - 1) * sd[:, None]], dim=1)


def resampled_stderr(columns: Tensor) -> Tensor:
    """Standard error [B] from the M integrated sign columns [B, M]: sqrt(mean_m V_m^2)."""
    return columns.pow(2).mean(1).sqrt()
