"""Exponential moving average of model weights (Polyak averaging), used for sampling and evaluation.

After every optimizer step: ``theta_ema <- d_n * theta_ema + (1 - d_n) * theta``
(Song et al. 2021 use decay 0.9999 for DDPM++ and 0.999 for NCSN++).

Warm-up (``warmup=True``): ``d_n = min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the
average forgets the random initial weights within the first few hundred steps (their weight after
``n`` updates is ``prod_k d_k = 9! n! / (n + 9)!``, 2e-15 at n = 300, against ``0.999^300 = 0.74``
without warm-up); a short run's EMA is then never far behind its raw weights. Without warm-up
``d_n = decay``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["EMA"]


class EMA:
    """Shadow copy of ``model``'s floating-point parameters and buffers, updated in place."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, warmup: bool = False):
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay!r}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0  # n: updates so far (restored from the step on resume)
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._cache: tuple | None = None

    def _pairs(
        self, model: nn.Module
    ) -> tuple[list[Tensor], list[Tensor], list[tuple[Tensor, Tensor]]]:
        """(ema params, model params, buffer pairs), built once per source model (walking the
        module tree every step costs more than the update itself for small models)."""
        if self._cache is None or self._cache[0] is not model:
            src = [p.detach() for p in model.parameters()]
            dst = list(self.model.parameters())
            bufs = list(zip(self.model.buffers(), model.buffers()))
            self._cache = (model, dst, src, bufs)
        return self._cache[1], self._cache[2], self._cache[3]

    def current_decay(self) -> float:
        """d_n of the next update."""
        n = self.num_updates
        return min(self.decay, (1.0 + n) / (10.0 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """theta_ema <- d_n theta_ema + (1 - d_n) theta; buffers are copied."""
        dst, src, bufs = self._pairs(model)
        torch._foreach_lerp_(dst, src, 1.0 - self.current_decay())
        self.num_updates += 1
        for b_ema, b in bufs:
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.model.load_state_dict(state)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model``."""
        model.load_state_dict(self.model.state_dict())
