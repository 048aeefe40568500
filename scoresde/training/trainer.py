"""The score-model trainer as a plain library: :class:`Trainer` (build, step, run) and ``train``.

One step (Song et al. 2021, Appendix C; Ho et al. 2020):

    lr_k   = lr * min(1, k / warmup)                      linear warmup
    L      = DSM loss on the global batch (sharded over ranks and micro-batches)
    g      = clip(grad L, grad_clip)                       global-norm clipping
    theta  = Adam(theta, g, lr_k);  theta_ema = d_k theta_ema + (1 - d_k) theta   (EMA, warm-up)

The batches and noise are functions of (seed, step, shard) (:mod:`~scoresde.training.batches`);
with the checkpointed optimizer / EMA / RNG states (:mod:`~scoresde.training.state`) a resumed run
gives the losses of an uninterrupted one, and DDP over W ranks matches one process with
``grad_accum = W``. At a step where several things are due they run in the order: log, evaluate
(:mod:`~scoresde.training.hooks`), checkpoint -- so work interrupted by a kill is redone on resume.

Artifacts in ``run_dir``: ``checkpoints/last.pt`` (+ ``step_XXXXXX.pt``), ``losses.jsonl`` (one
line per step), ``metrics.jsonl``, ``samples/step_XXXXXX.png``, ``loss_curve.png``,
``likelihood.json`` (final held-out likelihood).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from scoresde.io.checkpoint import save_checkpoint
from scoresde.io.distributed import resolve_device
from scoresde.io.loggers import NullLogger, make_logger
from scoresde.io.runs import build_dataset, build_score_model, build_sde
from scoresde.training import batches
from scoresde.training.batches import DataOrder, drop_labels, get_batch, mix_seed
from scoresde.training.config import LOSS_FUNCTIONS, loss_options, training_options
from scoresde.training.ema import EMA
from scoresde.training.hooks import Evaluator, plot_losses
from scoresde.training.loop import Every, Loop, adam, warmup_lr
from scoresde.training.setup import check_run_config, init_processes, probe_null_label
from scoresde.training.state import load_training_state, resume_path, training_state
from scoresde.training.steplog import NonFiniteLossError, StepLog

__all__ = ["NonFiniteLossError", "TrainResult", "Trainer", "resolve_device", "train"]


@dataclass
class TrainResult:
    """What a finished run leaves behind (rank 0; other ranks get losses only)."""

    run_dir: Path
    step: int
    losses: list[float]
    checkpoint: Path | None
    likelihood: dict[str, float] | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """State and steps of one training run; :meth:`run` drives it on the shared :class:`Loop`."""

    def __init__(
        self, cfg: DictConfig, run_dir: str | Path, logger=None, progress: bool | None = None
    ):
        t = self.t = training_options(cfg.get("training"))
        check_run_config(cfg)
        self.cfg, self.seed = cfg, int(cfg.seed)
        self.rank, self.world, self.device, self._own_pg, run_dir = init_processes(
            resolve_device(cfg.device), run_dir
        )
        self.run_dir, self.is_main, self.accum = Path(run_dir), self.rank == 0, t.grad_accum
        if t.batch_size % (self.world * self.accum):
            raise ValueError(
                f"training.batch_size={t.batch_size} must be divisible by world_size x grad_accum "
                f"= {self.world} x {self.accum}"
            )
        # --- data, model, optimizer, loss
        self.train_ds, self.test_ds = (
            build_dataset(cfg.data, "train"),
            build_dataset(cfg.data, "test"),
        )
        self.info = dict(self.train_ds.info)
        self.order = DataOrder(len(self.train_ds), t.batch_size, self.seed, self.world * self.accum)
        torch.manual_seed(self.seed)  # the same initial weights on every rank
        self.sde = build_sde(cfg.sde)
        self.model = build_score_model(cfg, self.info, self.sde).to(self.device)
        torch.manual_seed(mix_seed(self.seed, self.rank, batches.DROPOUT))  # per-rank dropout masks
        cuda = self.device.type == "cuda"
        cl = t.channels_last is True or (t.channels_last == "auto" and cuda)
        self.channels_last = self.info["kind"] == "image" and cl
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = EMA(self.model, t.ema_decay, warmup=t.ema_warmup)
        opt = {
            "lr": t.lr,
            "betas": tuple(t.betas),
            "eps": t.adam_eps,
            "weight_decay": t.weight_decay,
        }
        self.optimizer = adam(self.model.parameters(), **opt)
        self._params = list(self.model.parameters())
        self.num_classes = getattr(self.model.net, "num_classes", None)
        self.per_null = bool(self.num_classes) and probe_null_label(
            self.model, self.info["shape"], self.num_classes, self.device
        )
        self.loss_fn = LOSS_FUNCTIONS[t.loss]
        # CPU: the loss checks itself every step (free); CUDA: checked at log time (no sync)
        self.loss_kwargs = {**loss_options(t), "check_finite": not cuda and self.world == 1}
        self._amp = t.bf16 and cuda
        # every option the evaluations use is checked here, before the first step (and
        # before any file is written)
        self.evaluator = Evaluator(
            t, sde=self.sde, ema_model=self.ema.model, model=self.model, loss=self._loss,
            test_ds=self.test_ds, info=self.info, sampler=cfg.get("sampler") or {}, seed=self.seed,
            device=self.device, run_dir=self.run_dir, log=lambda m, k: self.log.log(m, k),
            enabled=self.is_main,
        )  # fmt: skip
        # --- resume
        self.step, self.resumed_from = 0, resume_path(t.resume, self.run_dir)
        self._config = OmegaConf.to_container(cfg, resolve=True)
        if self.resumed_from is not None:
            parts = (self.model, self.ema.model, self.optimizer, self._config, self.device)
            self.step = load_training_state(self.resumed_from, *parts)
            self.ema.num_updates = self.step
        # --- wrapping
        self.train_model: torch.nn.Module = self.model
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if cuda else None
            self.ddp = self.train_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids
            )
        if t.compile and cuda:
            self.train_model = torch.compile(self.train_model)
        self._cpu_gen, self._dev_gen = torch.Generator(), torch.Generator(device=self.device)
        self.log = StepLog(
            self.run_dir, is_main=self.is_main, world=self.world, total_steps=t.steps,
            resumed_step=self.step if self.resumed_from is not None else None,
            lr=lambda k: warmup_lr(t.lr, t.warmup, k), samples_per_step=t.batch_size,
            epoch_size=len(self.train_ds), logger=logger,
        )  # fmt: skip
        self.log.last_good_checkpoint = self.resumed_from
        save = Every(math.gcd(t.checkpoint_every, t.snapshot_every), self._save_hook, False)
        # in this order: the checkpoint of step s is written after the evaluations of step s
        hooks = [Every(t.log_every, self._log_hook), *self.evaluator.hooks(), save]
        progress = t.progress if progress is None else progress
        self.loop = Loop(self.train_step, hooks, progress=self.is_main and progress)

    @property
    def logger(self) -> Any:
        return self.log.logger

    @logger.setter
    def logger(self, value: Any) -> None:
        self.log.logger = self.evaluator.logger = value

    @property
    def losses(self) -> list[float]:
        return self.log.losses

    # -------------------------------------------------------------- one step
    def _loss(self, model, sde, x, y=None, generator=None) -> Tensor:
        return self.loss_fn(model, sde, x, y=y, generator=generator, **self.loss_kwargs)

    def _shard_batch(self, step: int, shard: int) -> tuple[Tensor, Tensor | None]:
        g = self.order.generator(self._cpu_gen, step, shard, batches.AUGMENT)
        x, y = get_batch(self.train_ds, self.order.indices(step, shard), generator=g)
        if self.num_classes:
            y = drop_labels(y.long(), self.t.label_dropout, self.num_classes, self.per_null, g)
        else:
            y = None
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, (y.to(self.device) if y is not None else None)

    def train_step(self, step: int | None = None) -> None:
        """One optimizer step on the global batch of ``step`` (default: the next one)."""
        step = self.step if step is None else step
        for grp in self.optimizer.param_groups:
            grp["lr"] = warmup_lr(self.t.lr, self.t.warmup, step)
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for m in range(self.accum):
            shard = self.rank * self.accum + m
            x, y = self._shard_batch(step, shard)
            gen = self.order.generator(self._dev_gen, step, shard, batches.NOISE)
            last = self.ddp is None or m == self.accum - 1
            with contextlib.nullcontext() if last else self.ddp.no_sync():
                try:
                    with torch.autocast(self.device.type, torch.bfloat16, enabled=self._amp):
                        loss = self._loss(self.train_model, self.sde, x, y=y, generator=gen)
                except FloatingPointError as e:
                    self.log.append(torch.full((), float("nan")), torch.zeros(()))
                    self.step = step + 1
                    self.log.flush(self.step)  # raises NonFiniteLossError naming this step
                    raise NonFiniteLossError(
                        f"non-finite loss at step {step + 1}: {e}"
                    ) from e  # pragma: no cover
                (loss / self.accum).backward()
            total = total + loss.detach().float()
        gnorm = torch.nn.utils.clip_grad_norm_(self._params, self.t.grad_clip or float("inf"))
        self.optimizer.step()
        self.ema.update(self.model)
        self.log.append(total / self.accum, gnorm.detach())
        self.step = step + 1

    def flush(self) -> dict[str, float] | None:
        """Write the buffered per-step losses (see :class:`~scoresde.training.steplog.StepLog`)."""
        return self.log.flush(self.step)

    # -------------------------------------------------------------- hooks
    def _log_hook(self, s: int) -> None:
        m = self.flush()
        if m is not None:
            self.loop.postfix(loss=f"{m['loss']:.4g}", lr=f"{m['lr']:.2g}")

    def _save_hook(self, s: int) -> None:
        ck, sn = self.t.checkpoint_every, self.t.snapshot_every
        snap = sn > 0 and s % sn == 0
        if snap or (ck > 0 and s % ck == 0):
            self.save(snapshot=snap)

    # -------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        order = {"seed": self.seed, "batch_size": self.t.batch_size}
        order["epoch"] = self.order.epoch(self.step)
        parts = (self.model, self.ema.model, self.optimizer, self.step, self._config, self.info)
        return training_state(*parts, order, self.device)

    def save(self, snapshot: bool = False) -> Path | None:
        """Checkpoint ``last.pt`` (and ``step_XXXXXX.pt``) after checking losses and weights."""
        self.flush()  # never checkpoint past an unchecked (possibly non-finite) loss
        if not self.is_main:
            return None
        if not all(bool(torch.isfinite(p).all()) for p in self._params):
            self.log.raise_non_finite(f"non-finite weights after step {self.step}")
        state = self.state_dict()
        path = save_checkpoint(self.run_dir / "checkpoints" / "last.pt", state)
        if snapshot:
            save_checkpoint(self.run_dir / "checkpoints" / f"step_{self.step:06d}.pt", state)
            self.plot_losses()
        self.log.last_good_checkpoint = path
        return path

    def plot_losses(self) -> None:
        if self.is_main and self.t.plot:
            plot_losses(self.losses, self.run_dir / "loss_curve.png")

    # -------------------------------------------------------------- the run
    def run(self) -> TrainResult:
        """Train to ``training.steps``, checkpoint, then the final samples and likelihood."""
        t0, t = time.perf_counter(), self.t
        self.model.train()
        self.loop.run(self.step, t.steps)
        ckpt = self.save(snapshot=t.snapshot_every > 0)
        res = TrainResult(
            self.run_dir, self.step, list(self.losses), ckpt, seconds=time.perf_counter() - t0
        )
        samples, res.likelihood = self.evaluator.final(self.step)
        if samples is not None:
            res.extra["samples"] = samples
        self.plot_losses()
        return res

    def close(self) -> None:
        if self._own_pg and dist.is_initialized():
            dist.destroy_process_group()


def train(
    cfg: DictConfig,
    run_dir: str | Path,
    *,
    name: str | None = None,
    group: str | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train the score model of ``cfg`` and write its artifacts to ``run_dir`` (see module doc).

    Rank 0 logs through ``scoresde.io.loggers.make_logger(cfg.logger, ...)``; the logger is finished
    in a ``finally`` (also when the run fails). Raises :class:`NonFiniteLossError` on NaN/inf loss.
    """
    logger, trainer, exit_code = NullLogger(), None, 1
    try:
        trainer = Trainer(cfg, run_dir, logger=None, progress=progress)
        if trainer.is_main and int(os.environ.get("RANK", "0")) == 0:
            logger = make_logger(cfg.logger, cfg, trainer.run_dir, name=name, group=group)
        trainer.logger = logger
        result = trainer.run()
        if result.likelihood:
            logger.log({f"final/{k}": v for k, v in result.likelihood.items()}, step=result.step)
        exit_code = 0
        return result
    finally:
        logger.finish(exit_code=exit_code)
        if trainer is not None:
            trainer.close()
