"""The logs of a training run: per-step losses buffered on the device and synced at log time
(averaged over ranks, checked for NaN/inf), ``losses.jsonl`` / ``metrics.jsonl`` rows (rank 0) and
the experiment logger.

On resume the logs keep the rows up to the resumed step (a torn last line is dropped, naming the
file), except the final evaluations of a run that had ended: those are redone. Leftover temp files
of killed atomic writes are removed when a run starts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from scoresde.errors import NonFiniteError
from scoresde.io.atomic import remove_stale_temps
from scoresde.io.runlog import JsonlLog

__all__ = ["NonFiniteLossError", "StepLog"]


class NonFiniteLossError(NonFiniteError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


class StepLog:
    """Buffers ``(loss, grad norm)`` per step; :meth:`flush` writes them (see module docstring)."""

    def __init__(
        self,
        run_dir: Path,
        *,
        is_main: bool,
        world: int,
        resumed_step: int | None,
        total_steps: int,
        lr: Callable[[int], float],
        samples_per_step: int,
        epoch_size: int,
        logger: Any = None,
    ):
        self.run_dir, self.is_main, self.world, self.logger = run_dir, is_main, world, logger
        self.lr, self.samples_per_step, self.epoch_size = lr, samples_per_step, epoch_size
        self.losses: list[float] = []
        self.last_good_checkpoint: Path | None = None
        self._loss: list[Tensor] = []
        self._gnorm: list[Tensor] = []
        self._t_last, self._steps_since = time.perf_counter(), 0
        if is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            for d in (run_dir, run_dir / "checkpoints", run_dir / "samples"):
                remove_stale_temps(d, recursive=False)  # leftovers of writes killed earlier
            keep_loss = keep_metric = None
            if resumed_step is not None:
                s, ended = resumed_step, resumed_step >= total_steps

                def keep_loss(r: dict) -> bool:
                    return r.get("step", 0) <= s

                def keep_metric(r: dict) -> bool:
                    return r.get("step", 0) < s or (
                        r.get("step") == s and ("loss" in r or not ended)
                    )

            self.loss_log, rows = JsonlLog.open(run_dir / "losses.jsonl", keep_loss)
            self.losses = [r["loss"] for r in rows]
            self.metric_log, _ = JsonlLog.open(run_dir / "metrics.jsonl", keep_metric)

    def append(self, loss: Tensor, grad_norm: Tensor) -> None:
        """Buffer one step's loss and gradient norm (device tensors: no sync)."""
        self._loss.append(loss)
        self._gnorm.append(grad_norm)
        self._steps_since += 1

    def flush(self, step: int) -> dict[str, float] | None:
        """Sync the buffered losses of the steps up to ``step``; write, log and return the means."""
        if not self._loss:
            return None
        losses, gn = torch.stack(self._loss), torch.stack(self._gnorm).float()
        if self.world > 1:
            dist.all_reduce(losses)
            losses /= self.world
        first = step - len(self._loss) + 1
        vals, gvals = losses.cpu().tolist(), gn.cpu().tolist()
        self._loss, self._gnorm = [], []
        for i, (v, g) in enumerate(zip(vals, gvals)):
            if not (math.isfinite(v) and math.isfinite(g)):
                what = f"loss ({v})" if not math.isfinite(v) else f"gradient norm ({g})"
                self.raise_non_finite(f"non-finite {what} at step {first + i}")
        now = time.perf_counter()
        rate = self._steps_since / max(now - self._t_last, 1e-9)
        self._t_last, self._steps_since = now, 0
        metrics = {
            "loss": sum(vals) / len(vals),
            "lr": self.lr(step - 1),
            "grad_norm": float(gn.mean()),
            "steps_per_sec": rate,
            "samples_per_sec": rate * self.samples_per_step,
            "epoch": step * self.samples_per_step / self.epoch_size,
        }
        if self.is_main:
            self.losses.extend(vals)
            self.loss_log.write([{"step": first + i, "loss": v} for i, v in enumerate(vals)])
            self.log(metrics, step)
        return metrics

    def raise_non_finite(self, what: str) -> None:
        good = self.last_good_checkpoint
        where = (
            f"the last good checkpoint is {good}" if good else "no checkpoint was written before it"
        )
        raise NonFiniteLossError(
            f"{what}; training stopped, {where}. Try a lower training.lr, training.grad_clip=1, "
            f"or training.bf16=false."
        )

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """A ``metrics.jsonl`` row and the logger (rank 0)."""
        if not self.is_main:
            return
        self.metric_log.write([{"step": step, **metrics}])
        if self.logger is not None:
            self.logger.log(
                {f"train/{k}" if "/" not in k else k: v for k, v in metrics.items()}, step=step
            )
