"""Periodic work of a training run, on the EMA weights: sample grids, the held-out EMA loss, the
held-out likelihood, and the loss curve. Each runs inside :func:`fork_rng`, so evaluating never
perturbs the training RNG stream (a resumed run equals an uninterrupted one), and draws its noise
from a generator seeded with ``mix_seed(seed, tag)`` (the same noise at every evaluation).

Every option these use is checked before the first training step (:func:`check_sampler_options`,
:func:`check_likelihood_options`), not when the first periodic sample or the final likelihood runs.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from scoresde.io.atomic import write_json_atomic
from scoresde.io.plots import save_loss_curve, save_samples
from scoresde.likelihood import bits_per_dim, log_likelihood
from scoresde.likelihood import ode_likelihood as _ode_likelihood
from scoresde.sampling import METHODS, method_options, sample
from scoresde.sde import SDE
from scoresde.training.batches import EVAL, LIKELIHOOD, SAMPLE, get_batch, mix_seed
from scoresde.training.config import LikelihoodOptions, TrainingConfig
from scoresde.training.loop import Every

__all__ = ["Evaluator", "check_likelihood_options", "check_sampler_options", "fork_rng"]


def check_sampler_options(sampler: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg.sampler`` as checked :func:`scoresde.sampling.sample` keyword arguments.

    Raises ValueError naming the bad key (``sampler.steps=0``, a mistyped option, a bad choice).
    """
    opts = dict(sampler)
    method = opts.get("method")
    if method not in METHODS:
        raise ValueError(f"sampler.method must be one of {list(METHODS)}, got {method!r}")
    try:
        method_options(method, **{k: v for k, v in opts.items() if k != "method"})
    except (ValueError, TypeError) as e:
        raise ValueError(f"sampler: {e}") from e
    eps = opts.get("eps")
    if eps is not None and not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"sampler.eps must be a number > 0, got {eps!r}")
    return opts


def check_likelihood_options(options: LikelihoodOptions, sde: SDE, shape: Sequence[int]) -> None:
    """Check ``training.likelihood`` against the SDE and data shape (ValueError naming the key)."""
    o = options
    x = torch.zeros(1, *shape)
    try:  # the likelihood's own argument check (its single source of valid values)
        _ode_likelihood._check_args(
            sde, x, o.trace, o.method, o.rtol, o.atol, o.eps, o.probes, False, False, False
        )
    except (ValueError, TypeError) as e:
        raise ValueError(f"training.likelihood.{e}") from e


@contextlib.contextmanager
def fork_rng(device: torch.device):
    """Run the block without changing the global torch / CUDA / Python RNG states."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        state = random.getstate()
        yield
        random.setstate(state)


class Evaluator:
    """The evaluations of one run (rank 0 does them; other ranks skip), on the EMA weights.

    Construction checks every option they will use: ``cfg.sampler`` when samples are drawn,
    ``training.likelihood`` when a likelihood is computed. ``log(metrics, step)`` records results.
    """

    def __init__(
        self,
        t: TrainingConfig,
        *,
        sde: SDE,
        ema_model: torch.nn.Module,
        model: torch.nn.Module,
        loss: Callable[..., Tensor],
        test_ds: Any,
        info: Mapping[str, Any],
        sampler: Mapping[str, Any],
        seed: int,
        device: torch.device,
        run_dir: Path,
        log: Callable[[dict[str, Any], int], None],
        enabled: bool = True,
        logger: Any = None,
    ):
        self.t, self.sde, self.ema_model, self.model, self.loss = t, sde, ema_model, model, loss
        self.test_ds, self.info = test_ds, dict(info)
        self.sampler, self.lk = dict(sampler), t.likelihood
        if t.sample_every or t.final_sample_n:
            self.sampler = check_sampler_options(self.sampler)
        if t.likelihood_every or t.final_likelihood_n:
            check_likelihood_options(t.likelihood, sde, self.info["shape"])
        self.seed, self.device, self.run_dir = seed, device, run_dir
        self.log, self.enabled, self.logger = log, enabled, logger
        self.is_image = self.info["kind"] == "image"
        self.num_classes = getattr(getattr(model, "net", model), "num_classes", None)
        self.last_samples: Tensor | None = None

    def _guarded(self, fn: Callable[..., Any]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            if self.enabled:
                with fork_rng(self.device):
                    fn(*args)

        return run

    def hooks(self) -> list[Every]:
        """The periodic evaluations (not after the last step: :meth:`final` does its own)."""
        t = self.t
        sample = self._guarded(lambda s: self.sample(t.sample_n, f"step_{s:06d}", s))
        return [
            Every(t.eval_every, self._guarded(lambda s: self.ema_loss(t.eval_n, s)), False),
            Every(t.sample_every, sample, False),
            Every(
                t.likelihood_every,
                self._guarded(lambda s: self.likelihood(t.likelihood_n, s)),
                False,
            ),
        ]

    def final(self, step: int) -> tuple[dict[str, Any] | None, dict[str, float] | None]:
        """The end-of-run samples (``samples/final.png``) and likelihood (``likelihood.json``)."""
        info = lk = None
        if self.enabled:
            with fork_rng(self.device):
                if self.t.final_sample_n > 0:
                    info = self.sample(self.t.final_sample_n, "final", step)
                if self.t.final_likelihood_n > 0:
                    lk = self.likelihood(self.t.final_likelihood_n, step)
                    write_json_atomic(self.run_dir / "likelihood.json", lk)
        return info, lk

    def _gen(self, tag: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, tag))

    def _labels(self, n: int) -> Tensor | None:
        return torch.arange(n, device=self.device) % self.num_classes if self.num_classes else None

    def _held_out(self, n: int) -> tuple[Tensor, Tensor | None]:
        n = min(int(n), len(self.test_ds))
        x, y = get_batch(self.test_ds, torch.arange(n))
        return x.to(self.device), (y.to(self.device).long() if self.num_classes else None)

    @torch.no_grad()
    def sample(self, n: int, tag: str, step: int) -> dict[str, Any]:
        """``n`` samples of the EMA model with ``cfg.sampler``; a PNG ``samples/<tag>.png``."""
        t0 = time.perf_counter()
        res = sample(
            self.sde,
            self.ema_model.score_fn(self._labels(n)),
            (n, *self.info["shape"]),
            generator=self._gen(SAMPLE),
            device=self.device,
            **self.sampler,
        )
        secs = time.perf_counter() - t0
        x = res.x.float().cpu()
        ref = None
        if not self.is_image:
            ref = get_batch(self.test_ds, torch.arange(min(n, len(self.test_ds))))[0]
        path = save_samples(
            x,
            self.run_dir / "samples" / f"{tag}.png",
            self.info["kind"],
            data_range=self.info.get("data_range"),
            reference=ref,
            title=f"step {step}",
        )
        out = {
            "samples/nfe": int(res.nfe),
            "samples/seconds": secs,
            "samples/nonfinite": int((~torch.isfinite(x)).any(dim=tuple(range(1, x.dim()))).sum()),
        }
        if self.logger is not None:
            self.logger.log_image("samples/images", path, step=step)
        self.last_samples = x
        self.log(out, step)
        return {**out, "path": str(path)}

    def likelihood(self, n: int, step: int) -> dict[str, float]:
        """Held-out likelihood of the EMA model: bits/dim for images, nats/dim for vectors."""
        x, y = self._held_out(n)
        score_fn = self.ema_model.score_fn(y)
        g, d, lk = self._gen(LIKELIHOOD), x[0].numel(), asdict(self.lk)
        t0 = time.perf_counter()
        if self.is_image and self.info.get("levels"):
            res = bits_per_dim(
                self.sde,
                score_fn,
                x,
                levels=int(self.info["levels"]),
                data_range=tuple(self.info["data_range"]),
                generator=g,
                **lk,
            )
            se = res.stderr
            out = {
                "bpd": float(res.bpd.detach()),
                "bpd_stderr": float(se.detach()) if se is not None else float("nan"),
            }
        else:
            res = log_likelihood(self.sde, score_fn, x, generator=g, **lk)
            nll = -res.logp.detach().double()
            prior_nll = -self.sde.prior_logp(x).detach().double()
            se = float(nll.std() / math.sqrt(len(nll)) / d) if len(nll) > 1 else float("nan")
            out = {
                "nll_nats_per_dim": float(nll.mean() / d),
                "nll_stderr": se,
                "prior_nll_nats_per_dim": float(prior_nll.mean() / d),
            }
        out.update(
            {
                "n": int(x.shape[0]),
                "nfe": int(res.nfe) if res.nfe is not None else -1,
                "seconds": time.perf_counter() - t0,
                "step": step,
            }
        )
        self.log({f"likelihood/{k}": v for k, v in out.items() if k != "step"}, step)
        return out

    @torch.no_grad()
    def ema_loss(self, n: int, step: int) -> dict[str, float]:
        """The loss of the EMA and of the raw model on a fixed held-out batch (same noise)."""
        x, y = self._held_out(n)
        out = {}
        for name, m in (("eval/ema_loss", self.ema_model), ("eval/loss", self.model)):
            was = m.training
            m.eval()
            out[name] = float(self.loss(m, self.sde, x, y=y, generator=self._gen(EVAL)))
            m.train(was)
        self.log(out, step)
        return out


def plot_losses(losses: Sequence[float], path: Path) -> None:
    """``loss_curve.png`` of the per-step losses (written atomically)."""
    if losses:
        save_loss_curve(range(1, len(losses) + 1), losses, path)
