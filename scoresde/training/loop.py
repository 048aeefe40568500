"""The one training loop: steps ``start .. stop - 1``, then the periodic hooks that are due.

    for k in range(start, stop):
        step(k)                                  # one optimizer step: the batch and noise of step k
        for hook in hooks:                       # in order; after the step, s = k + 1 steps done
            if hook.every > 0 and s % hook.every == 0 and (hook.at_end or s < stop):
                hook.fn(s)

The score-model trainer, the noisy-classifier trainer and any other fixed-step trainer (a feature
net) run on it; the optimizer helpers (:func:`adam`, :func:`warmup_lr`) are shared too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

__all__ = ["Every", "Loop", "adam", "warmup_lr"]


@dataclass
class Every:
    """Call ``fn(s)`` after every ``every``-th step (0: never); ``at_end``: also after the last."""

    every: int
    fn: Callable[[int], Any]
    at_end: bool = True


class Loop:
    """Run ``step(k)`` for k in [start, stop) with ``hooks``; ``bar`` is the progress bar (tqdm)."""

    def __init__(
        self,
        step: Callable[[int], Any],
        hooks: Sequence[Every] = (),
        *,
        progress: bool = False,
        desc: str = "train",
    ):
        self.step, self.progress, self.desc = step, progress, desc
        self.hooks = [h for h in hooks if h.every > 0]
        self.bar: Any = None

    def run(self, start: int, stop: int) -> int:
        """Steps from ``start`` to ``stop``; returns ``stop``."""
        hooks = [(h.every, h.fn, h.at_end) for h in self.hooks]  # plain tuples: cheap per step
        self.bar = tqdm(
            total=stop,
            initial=start,
            disable=not self.progress,
            desc=self.desc,
            dynamic_ncols=True,
            mininterval=0.5,
            unit="it",
        )
        try:
            for k in range(start, stop):
                self.step(k)
                self.bar.update(1)
                s = k + 1
                for every, fn, at_end in hooks:
                    if s % every == 0 and (at_end or s < stop):
                        fn(s)
        finally:
            self.bar.close()
        return stop

    def postfix(self, **values: Any) -> None:
        """Show values beside the progress bar."""
        if self.bar is not None and self.progress:
            self.bar.set_postfix(values, refresh=False)


def adam(params: Iterable[torch.nn.Parameter], **kw: Any) -> torch.optim.Adam:
    """Adam with the fused kernel where this torch build has it (CPU since torch 2.4, CUDA), else
    the multi-tensor one. Measured here on the default MLP: 1.5 ms per step fused, 3.9 ms
    multi-tensor, 4.9 ms with torch's CPU default (a per-tensor loop)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, foreach=True, **kw)


def warmup_lr(lr: float, warmup: int, step: int) -> float:
    """Linear warmup: ``lr * min(1, (step + 1) / warmup)`` for the step with index ``step``."""
    return lr * (min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0)
