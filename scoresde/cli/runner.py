"""The one command-line runner: compose the Hydra config, prepare the process, call ONE function.

Every ``python -m scoresde.<cmd>`` is::

    def main() -> None:
        run_command("generate", "generate", _generate)   # command, config name, library call

:func:`run_command` runs Hydra (so ``--help``, ``--cfg job``, ``-m`` sweeps and launchers work),
and for each job :func:`prepare` sets the intra-op threads (key ``threads``), the seeds
(``seed``), the device (``device``: a CUDA device that is not there is exit 2), joins the
torchrun process group when asked and fixes the run directory (rank 0's, on every rank). Errors
end with one ``error: ...`` line on stderr and the exit code of :mod:`scoresde.cli.messages`
(0 done, 2 bad input or config, 3 non-finite values, 1 other). ``SCORESDE_DEBUG=1`` prints the
traceback as well.
"""

from __future__ import annotations

import os
import random
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from scoresde.checks import check_size
from scoresde.cli.messages import EXIT_OK, exit_code, message
from scoresde.errors import ConfigError
from scoresde.io import distributed
from scoresde.io.atomic import remove_stale_temps
from scoresde.io.distributed import ProcessInfo

__all__ = ["DEBUG_ENV", "RunContext", "check_keys", "check_threads", "prepare", "run_command"]

DEBUG_ENV = "SCORESDE_DEBUG"
CONFIG_MODULE = "scoresde.conf"


@dataclass(frozen=True)
class RunContext:
    """What :func:`prepare` set up for one job: where to write, on which device, which rank."""

    command: str
    out_dir: Path
    device: torch.device
    process: ProcessInfo

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes result files and logs."""
        return self.process.is_main

    def print(self, *args: Any) -> None:
        """``print`` on rank 0 only."""
        if self.is_main:
            print(*args, flush=True)


def check_threads(threads: Any) -> int | None:
    """``threads``: null (torch's default) or an integer >= 1."""
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(
            f"threads must be null (torch's default) or an integer >= 1 "
            f"(torch intra-op threads per process), got {threads!r}"
        )
    return threads


def prepare(
    cfg: DictConfig, command: str, out_dir: str | Path, *, distributed_job: bool = False
) -> RunContext:
    """Threads, seeds, device and the run directory for one job of ``command``.

    Rank 0 first removes the temp files that killed atomic writes left in the run directory.

    With ``distributed_job`` and ``WORLD_SIZE > 1`` (torchrun), the process group is joined and
    every rank uses rank 0's run directory.
    """
    threads = check_threads(cfg.get("threads"))
    if threads is not None:
        torch.set_num_threads(threads)
    if "seed" in cfg:
        seed = check_size("seed", cfg.seed, minimum=0)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
    info = distributed.process_info()
    device = distributed.resolve_device(cfg.get("device", "cpu"), info.local_rank)
    if info.rank == 0:  # leftovers of writes killed in an earlier attempt; the other ranks wait in
        remove_stale_temps(out_dir)  # the broadcast below, so none of their writes is under way
    if distributed_job:
        info = distributed.init(device)
        out_dir = distributed.broadcast_object(str(out_dir))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return RunContext(command, Path(out_dir), device, info)


def check_keys(cfg: DictConfig, schema: type, prog: str) -> None:
    """Refuse top-level keys of ``cfg`` that the dataclass ``schema`` does not declare."""
    known = {f.name for f in fields(schema)}
    extra = sorted(set(cfg) - known)
    if extra:
        raise ConfigError(
            f"{', '.join(extra)}: not used by {prog} (it would be ignored, so it is refused); "
            f"valid keys are: {', '.join(sorted(known))}"
        )


def _overrides(argv: Sequence[str]) -> list[str]:
    return [a for a in argv if not a.startswith("-")]


def _key_lister(config_name: str, overrides: Sequence[str]) -> Callable[[str], list[str] | None]:
    """Valid keys at a config path, from the config composed with the group choices only."""
    groups = [o for o in overrides if "=" in o and "." not in o.split("=", 1)[0] and "," not in o]

    def keys(path: str) -> list[str] | None:
        from hydra import compose, initialize_config_module

        for chosen in (groups, []):
            GlobalHydra.instance().clear()
            try:
                with initialize_config_module(version_base="1.3", config_module=CONFIG_MODULE):
                    cfg = compose(config_name, overrides=list(chosen))
            except Exception:  # noqa: BLE001, S112 - best effort; the error itself is reported
                continue
            node = OmegaConf.select(cfg, path) if path else cfg
            return sorted(str(k) for k in node) if isinstance(node, DictConfig) else None
        return None

    return keys


def run_command(
    command: str,
    config_name: str,
    main: Callable[[DictConfig, RunContext], Any],
    *,
    distributed_job: bool = False,
    schema: type | None = None,
    argv: Sequence[str] | None = None,
) -> Any:
    """``python -m scoresde.<command>``: Hydra composes ``conf/<config_name>.yaml`` with the
    command-line overrides, :func:`prepare` sets the job up, ``main(cfg, ctx)`` does the work.

    ``schema`` (the command's structured config) refuses top-level keys it does not declare, such
    as ``+sde=ve`` for a command that takes the SDE from the checkpoint. Returns what ``main``
    returned. On an error, prints one ``error: ...`` line (the traceback
    first when ``SCORESDE_DEBUG=1``) and raises ``SystemExit`` with the exit code.
    """
    prog = f"python -m scoresde.{command}"
    argv = list(sys.argv[1:] if argv is None else argv)
    result: dict[str, Any] = {}

    def job(cfg: DictConfig) -> Any:
        try:
            if schema is not None:
                check_keys(cfg, schema, prog)
            out_dir = HydraConfig.get().runtime.output_dir
            ctx = prepare(cfg, command, out_dir, distributed_job=distributed_job)
            result["value"] = main(cfg, ctx)
        except Exception as e:  # noqa: BLE001 - reported here, so Hydra adds no lines of its own
            _report(e, prog, _key_lister(config_name, _overrides(argv)))
            raise SystemExit(exit_code(e)) from None
        return result["value"]

    entry = hydra.main(
        version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name
    )(job)
    saved_argv, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises; this function reports
    sys.argv = [prog, *argv]
    try:
        entry()
    except SystemExit:
        raise
    except BaseException as e:  # noqa: BLE001 - every error ends in one line and an exit code
        _report(e, prog, _key_lister(config_name, _overrides(argv)))
        raise SystemExit(exit_code(e)) from None
    finally:
        sys.argv = saved_argv
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_env
    return result.get("value", EXIT_OK)


def _report(e: BaseException, prog: str, keys: Callable[[str], list[str] | None]) -> None:
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    try:
        text = message(e, prog, keys)
    except Exception:  # noqa: BLE001 - never hide the original error behind a formatting bug
        text = f"{type(e).__name__}: {e}"
    rank = distributed.process_info().rank if "RANK" in os.environ else 0
    prefix = f"[rank {rank}] " if rank else ""
    print(f"error: {prefix}{text}", file=sys.stderr, flush=True)
