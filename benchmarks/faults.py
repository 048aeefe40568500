"""Kill -9 anywhere: SIGKILL each command line at random points, resume, compare, look for damage.

For each command (``train`` on a tiny toy config, ``likelihood`` and ``generate`` of that run) the
script first runs it uninterrupted (the reference), then ``--trials`` times: start it in a fresh
output directory, SIGKILL it at a random time drawn uniformly between its first file write and the
reference's wall time (redrawn, in a fresh directory, when the run ends first), scan the directory
for unreadable files, rerun the same command (train with ``training.resume=auto``; likelihood and
generate rerun in the same output directory) until it exits 0 (at most ``--max-reruns`` times), scan
again and compare the result with the reference's:

- ``train``: the final ``checkpoints/last.pt`` weights (model and EMA) and ``losses.jsonl``,
  bit for bit;
- ``likelihood``: ``likelihood.json`` without its timing keys;
- ``generate``: every array of ``samples.npz``.

A file is "corrupt" when it cannot be read whole by its format's reader (``torch.load`` with
``weights_only=True``, ``json``, every line of a ``.jsonl``, ``numpy.load`` of every array,
Pillow, YAML); leftover temporary files of the atomic writer are counted apart. The commands are
black boxes (``python -m scoresde.<cmd>`` with Hydra overrides), one intra-op thread each.

    python benchmarks/faults.py                   # 20 kills per command (about an hour on 2 cores)
    python benchmarks/faults.py --trials 5 --commands train,generate

Prints the table (runs, interrupted, resumed identically, corrupt files, leftover temp files) and
writes one CSV row per trial to ``benchmarks/results/faults.csv``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$")  # scoresde.io.atomic's temp names
TIMING_KEYS = {"wall_time_s", "wall_s", "seconds", "time_s", "elapsed_s", "timestamp", "started"}

TRAIN = [
    "experiment=toy2d",
    "data=moons",
    "logger=none",
    "device=cpu",
    "threads=1",
    "model.hidden=32",
    "model.num_blocks=1",
    "model.embed_dim=16",
    "data.n=1000",
    "data.n_test=100",
    "training.steps=300",
    "training.batch_size=64",
    "training.warmup=20",
    "training.progress=false",
    "training.plot=false",
    "training.log_every=10",
    "training.checkpoint_every=25",
    "training.snapshot_every=100",
    "training.eval_every=50",
    "training.eval_n=64",
    "training.sample_every=100",
    "training.sample_n=32",
    "training.final_sample_n=32",
    "training.final_likelihood_n=16",
    "training.likelihood.rtol=1e-3",
    "training.likelihood.atol=1e-3",
    "sampler.steps=50",
]


# likelihood and generate evaluate the reference training run; ckpt= is added per run
LIKELIHOOD = ["split=test", "max_samples=64", "batch_size=8", "rtol=1e-3", "atol=1e-3"]
GENERATE = ["n=64", "batch_size=8", "sampler=euler_maruyama", "sampler.steps=200", "device=cpu"]
QUIET = ["progress=false", "threads=1"]


@dataclass
class Command:
    """One command line: its module, arguments for an output dir, and its rerun arguments."""

    name: str
    module: str
    args: Callable[[Path], list[str]]
    rerun_extra: list[str]
    result: Callable[[Path], object]


@dataclass
class Trial:
    command: str
    trial: int
    kill_at_s: float
    interrupted: bool
    corrupt_after_kill: int
    reruns: int
    finished: bool
    identical: bool
    corrupt_after_resume: int
    leftover_temps: int
    wall_s: float
    note: str = ""
    corrupt_files: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ running
def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled", WANDB_SILENT="true")
    env["MPLBACKEND"] = "Agg"
    env.pop("SCORESDE_DEBUG", None)
    return env


def _argv(cmd: Command, out: Path, extra: list[str] = ()) -> list[str]:
    return [sys.executable, "-m", cmd.module, *cmd.args(out), f"hydra.run.dir={out}", *extra]


def run_to_end(cmd: Command, out: Path, extra: list[str] = ()) -> tuple[int, str, float]:
    t0 = time.perf_counter()
    p = subprocess.run(
        _argv(cmd, out, extra),
        cwd=out.parent,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    last = (p.stderr.strip().splitlines() or [""])[-1]
    return p.returncode, last, time.perf_counter() - t0


def _start(cmd: Command, out: Path, stderr: int) -> subprocess.Popen:
    """Start ``cmd`` writing into ``out`` (stdout discarded; stderr as given, as text)."""
    return subprocess.Popen(
        _argv(cmd, out),
        cwd=out.parent,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


def first_write_s(cmd: Command, out: Path) -> tuple[float, float]:
    """Run once uninterrupted, polling for the first file the command writes: (first, total) s."""
    t0 = time.perf_counter()
    p = _start(cmd, out, stderr=subprocess.PIPE)
    first = None
    while p.poll() is None:
        if first is None and any(f.is_file() and ".hydra" not in f.parts for f in out.rglob("*")):
            first = time.perf_counter() - t0
        time.sleep(0.05)
    total = time.perf_counter() - t0
    err = p.stderr.read()
    if p.returncode != 0:
        raise SystemExit(f"reference {cmd.name} run failed ({p.returncode}): {err[-2000:]}")
    return (first if first is not None else 0.5 * total), total


def kill_at(cmd: Command, out: Path, at_s: float) -> float | None:
    """Start the command and SIGKILL it ``at_s`` seconds later.

    Returns None when it was killed mid-run, else the seconds it took to finish on its own.
    """
    t0 = time.perf_counter()
    p = _start(cmd, out, stderr=subprocess.DEVNULL)
    try:
        p.wait(timeout=at_s)
        return time.perf_counter() - t0  # finished before the kill
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.wait()
        return None


# ------------------------------------------------------------------------------ checking files
def _read(path: Path) -> None:
    """Read ``path`` whole with its format's reader (raises when it is torn or corrupt)."""
    suffix = path.suffix
    if path.stat().st_size == 0 and suffix in {".pt", ".json", ".npz", ".png", ".yaml"}:
        raise ValueError("empty file")
    if suffix == ".pt":
        torch.load(path, map_location="cpu", weights_only=True)
    elif suffix == ".json":
        json.loads(path.read_text())
    elif suffix == ".jsonl":
        for ln in path.read_text().splitlines():
            if ln.strip():
                json.loads(ln)
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for k in z.files:
                z[k]
    elif suffix == ".png":
        from PIL import Image

        with Image.open(path) as im:
            im.load()
    elif suffix == ".yaml":
        yaml.safe_load(path.read_text())


def scan(directory: Path) -> tuple[list[str], list[str]]:
    """(corrupt files, leftover temp files) under ``directory`` (relative names)."""
    corrupt, temps = [], []
    for p in sorted(directory.rglob("*")):
        if not p.is_file() or "wandb" in p.parts:
            continue
        rel = str(p.relative_to(directory))
        if TEMP_NAME.match(p.name):
            temps.append(rel)
            continue
        try:
            _read(p)
        except Exception as e:  # noqa: BLE001 -- any failure to read is damage, whatever its type
            corrupt.append(f"{rel} ({type(e).__name__})")
    return corrupt, temps


# ------------------------------------------------------------------------------ results
def _digest_state(sd: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        v = sd[k]
        h.update(k.encode())
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(v, dict):
            h.update(_digest_state(v).encode())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()


def train_result(out: Path) -> object:
    state = torch.load(out / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    losses = (out / "losses.jsonl").read_text()
    weights = {
        k: _digest_state(state[k]) for k in ("model", "ema") if isinstance(state.get(k), dict)
    }
    return {"step": state.get("step"), "weights": weights, "losses": _strip_times(losses)}


def _strip_times(jsonl: str) -> list:
    rows = [json.loads(ln) for ln in jsonl.splitlines() if ln.strip()]
    return [_drop_timing(r) for r in rows]


def _drop_timing(obj):
    if isinstance(obj, dict):
        return {
            k: _drop_timing(v)
            for k, v in obj.items()
            if k not in TIMING_KEYS and "time" not in k and "wall" not in k
        }
    if isinstance(obj, list):
        return [_drop_timing(v) for v in obj]
    return obj


def likelihood_result(out: Path) -> object:
    return _drop_timing(json.loads((out / "likelihood.json").read_text()))


def generate_result(out: Path) -> object:
    with np.load(out / "samples.npz", allow_pickle=False) as z:
        return {
            k: hashlib.sha256(np.ascontiguousarray(z[k]).tobytes()).hexdigest() for k in z.files
        }


# ------------------------------------------------------------------------------ the benchmark
def run_trials(cmd: Command, work: Path, trials: int, rng: random.Random, max_reruns: int):
    ref_dir = work / f"{cmd.name}_ref"
    first, total = first_write_s(cmd, ref_dir)
    reference = cmd.result(ref_dir)
    print(f"{cmd.name}: reference {total:.1f} s (first write at {first:.1f} s)", flush=True)
    rows = []
    for i in range(trials):
        out = work / f"{cmd.name}_{i:02d}"
        t0 = time.perf_counter()
        # The machine's load changes run times: when a run ends before its kill, learn its
        # duration and draw again in a fresh directory, so that every trial is a mid-run kill.
        for _attempt in range(4):
            at = rng.uniform(0.9 * first, total)
            took = kill_at(cmd, out, at)
            interrupted = took is None
            if interrupted:
                break
            total = max(first / 0.9 + 0.1, 0.95 * min(total, took))
            shutil.rmtree(out, ignore_errors=True)
        corrupt_kill, _ = scan(out)
        reruns, finished, note = 0, False, ""
        while reruns < max_reruns and not finished:
            reruns += 1
            code, last, _ = run_to_end(cmd, out, cmd.rerun_extra)
            finished = code == 0
            note = "" if finished else f"exit {code}: {last[:200]}"
        identical = False
        if finished:
            try:
                identical = cmd.result(out) == reference
            except Exception as e:  # noqa: BLE001 -- a result that cannot be read is a failure
                note = f"result unreadable: {type(e).__name__}: {e}"[:200]
        corrupt, temps = scan(out)
        row = Trial(
            cmd.name,
            i,
            round(at, 2),
            interrupted,
            len(corrupt_kill),
            reruns,
            finished,
            identical,
            len(corrupt),
            len(temps),
            round(time.perf_counter() - t0, 1),
            note,
            corrupt_kill + corrupt,
            temps,
        )
        rows.append(row)
        flag = "ok" if identical and not corrupt and not corrupt_kill else "FAIL"
        when = "mid-run" if interrupted else "after the end"
        print(
            f"  {cmd.name} #{i:02d}: kill at {at:5.1f} s ({when})"
            f", corrupt {len(corrupt_kill)}/{len(corrupt)}, temps {len(temps)}, {flag} {note}",
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
    return ref_dir, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="random kills per command")
    ap.add_argument("--commands", default="train,likelihood,generate")
    ap.add_argument("--seed", type=int, default=0, help="seeds the kill times")
    ap.add_argument("--max-reruns", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="default: a temporary directory, removed")
    ap.add_argument("--out", default=str(RESULTS / "faults.csv"))
    a = ap.parse_args()
    if a.trials < 1 or a.max_reruns < 1:
        raise SystemExit("--trials and --max-reruns must be >= 1")
    torch.set_num_threads(1)
    wanted = [c.strip() for c in a.commands.split(",") if c.strip()]
    unknown = sorted(set(wanted) - {"train", "likelihood", "generate"})
    if unknown:
        raise SystemExit(f"--commands: unknown {unknown}; choose from train, likelihood, generate")
    work = Path(a.workdir or tempfile.mkdtemp(prefix="scoresde_faults_"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    print(f"faults benchmark: {a.trials} kills per command, one intra-op thread, work dir {work}")

    train = Command(
        "train", "scoresde.train", lambda out: list(TRAIN), ["training.resume=auto"], train_result
    )
    ref_run = work / "train_ref"
    if "train" in wanted:
        ref_run, rows = run_trials(train, work, a.trials, rng, a.max_reruns)
    else:
        rows = []
        first_write_s(train, ref_run)  # the model that likelihood / generate evaluate
    commands = {
        "likelihood": Command(
            "likelihood",
            "scoresde.likelihood",
            lambda out: [f"ckpt={ref_run}", *LIKELIHOOD, *QUIET],
            [],
            likelihood_result,
        ),
        "generate": Command(
            "generate",
            "scoresde.generate",
            lambda out: [f"ckpt={ref_run}", *GENERATE, *QUIET],
            [],
            generate_result,
        ),
    }
    for name in ("likelihood", "generate"):
        if name in wanted:
            rows += run_trials(commands[name], work, a.trials, rng, a.max_reruns)[1]

    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        fields = list(asdict(rows[0]))
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in rows:
            d = asdict(r)
            d["corrupt_files"] = "; ".join(d["corrupt_files"])
            d["temp_files"] = "; ".join(d["temp_files"])
            w.writerow(d)
    print()
    head = ["command", "runs", "killed mid-run", "resumed identically", "corrupt files"]
    print("| " + " | ".join([*head, "leftover temp files"]) + " |")
    print("|---|---|---|---|---|---|")
    for name in wanted:
        rs = [r for r in rows if r.command == name]
        corrupt = sum(r.corrupt_after_kill + r.corrupt_after_resume for r in rs)
        print(
            f"| {name} | {len(rs)} | {sum(r.interrupted for r in rs)} | "
            f"{sum(r.identical for r in rs)} | {corrupt} | {sum(r.leftover_temps for r in rs)} |"
        )
    print(f"\nper-trial rows: {out}")
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
