"""Kill -9 anywhere: training killed (SIGKILL) at chosen and random points -- during a checkpoint
write, during a periodic sample, mid-way through appending the loss log, during a figure write, at a
random time -- and resumed with training.resume=auto until done ends with the weights and the loss
log of an uninterrupted run, bit for bit; no file of the run directory is ever unreadable; torn log
lines are trimmed naming the file; leftover temp files are removed on the next start."""

import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from scoresde.io.checkpoint import load_checkpoint
from scoresde.io.runlog import read_jsonl
from scoresde.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
RUN = [
    "data=digits",
    "model=mlp",
    "logger=none",
    "device=cpu",
    "model.hidden=16",
    "model.num_blocks=1",
    "model.embed_dim=8",
    "model.dropout=0.1",
    "training.batch_size=32",
    "training.plot=false",
    "training.progress=false",
    "training.steps=24",
    "training.log_every=3",
    "training.checkpoint_every=4",
    "training.snapshot_every=8",
    "training.eval_every=5",
    "training.eval_n=16",
    "training.sample_every=6",
    "training.sample_n=8",
    "training.final_sample_n=8",
    "training.final_likelihood_n=4",
    "training.likelihood.rtol=1e-2",
    "training.likelihood.atol=1e-2",
    "sampler=euler_maruyama",
    "sampler.steps=4",
]

# One server process imports once, then forks one attempt per fault (an attempt is cheap; an
# import is not). Each attempt trains with one fault armed and dies by SIGKILL when it fires:
#   replace:<substring>:<k>  at the k-th os.replace onto a path containing <substring>
#                            (the temp file of an atomic write is complete, not yet renamed)
#   sample:<k>               inside the k-th sampler call (a periodic or final sample)
#   append:<k>               half-way through the k-th append to losses.jsonl (a torn line)
#   timer:<seconds>          at a random moment
#   none                     no fault (the server stops after the first attempt that finishes)
# After each attempt the run directory is copied to <snapshots>/<i> for the readability check.
SERVER = r"""
import json, os, shutil, signal, sys, threading, traceback
from hydra import compose, initialize_config_module
import torch._dynamo  # noqa: F401 - the first Adam imports it (seconds): once, before forking
import scoresde.io.runlog as runlog
import scoresde.training.hooks as hooks
from scoresde.training.trainer import train

run_dir, snapshots, faults, overrides = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]


def attempt(fault):
    kind, *arg = fault.split(":")
    count = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def armed():
        count[0] += 1
        return count[0] == int(arg[-1])

    if kind == "replace":
        real = os.replace

        def replace(src, dst):
            if arg[0] in str(dst) and armed():
                die()
            return real(src, dst)

        os.replace = replace
    elif kind == "sample":
        real_sample = hooks.sample

        def sample(*a, **k):
            if armed():
                die()
            return real_sample(*a, **k)

        hooks.sample = sample
    elif kind == "append":
        real_write = runlog.JsonlLog.write

        def write(self, rows):
            rows = list(rows)
            if self.path.name == "losses.jsonl" and rows and armed():
                text = "".join(runlog.json.dumps(r) + "\n" for r in rows)
                with open(self.path, "a") as f:
                    f.write(text[: len(text) // 2 + 3])
                die()
            return real_write(self, rows)

        runlog.JsonlLog.write = write
    elif kind == "timer":
        threading.Timer(float(arg[0]), die).start()
    train(cfg, run_dir)


with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
    cfg = compose("config", overrides=overrides)  # the same config for every attempt
    warm = compose("config", overrides=[*overrides, "training.steps=2", "training.resume=null"])
train(warm, os.path.join(snapshots, "warm-up"))  # first-call costs paid once, before forking
shutil.rmtree(os.path.join(snapshots, "warm-up"))
codes = []
for i, fault in enumerate(faults.split(",")):
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            attempt(fault)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    codes.append(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
    if os.path.isdir(run_dir):
        shutil.copytree(run_dir, os.path.join(snapshots, str(i)))
    if fault == "none" and codes[-1] == 0:
        break
print(json.dumps(codes))
"""


def cfg_of(*overrides):
    with initialize_config_module(version_base="1.3", config_module="scoresde.conf"):
        return compose("config", overrides=list(overrides))


def _attempts(faults: list[str], run_dir: Path, snapshots: Path) -> list[int]:
    """Exit codes of the attempts (-9: killed), run by :data:`SERVER`."""
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    snapshots.mkdir()
    args = [str(run_dir), str(snapshots), ",".join(faults), *RUN, "training.resume=auto"]
    p = subprocess.run(
        [sys.executable, "-c", SERVER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    codes = json.loads(p.stdout.strip().splitlines()[-1])
    assert all(c in (0, -9) for c in codes), (codes, p.stderr[-3000:])
    return codes


def _assert_readable(run_dir: Path) -> None:
    """Every file of the run (not the temp files of an interrupted write) reads back."""
    for p in run_dir.rglob("*"):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".pt":
            load_checkpoint(p)
        elif p.suffix == ".png":
            with Image.open(p) as im:
                im.load()
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".jsonl":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a torn last line is tolerated by design
                read_jsonl(p)


def test_killed_anywhere_and_resumed_equals_an_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    train(cfg_of(*RUN), ref)
    run = tmp_path / "killed"
    faults = [  # each fires in its attempt (the counts follow from the schedule in RUN)
        "replace:last.pt:2",  # during the checkpoint write of step 8 (resume from 4)
        "sample:2",  # during the periodic sample of step 12 (resume from 8)
        "append:3",  # half-way through appending the losses of step 15 (a torn last line)
        "replace:.png:1",  # during the sample grid write of step 18 (resume from 16)
        "sample:2",  # during the final sample, after the last checkpoint
        "replace:likelihood.json:1",  # during the final likelihood.json write
    ]  # then one kill at a random moment, and resume until done
    seed = random.randrange(10**6)
    timer = f"timer:{random.Random(seed).uniform(0.0, 1.0):.2f}"
    codes = _attempts([*faults, timer, "none", "none"], run, tmp_path / "snapshots")
    assert codes[: len(faults)] == [-9] * len(faults), codes  # every planned fault fired
    assert codes[-1] == 0, codes
    for snap in sorted((tmp_path / "snapshots").iterdir()):
        _assert_readable(snap)
    assert read_jsonl(run / "losses.jsonl") == read_jsonl(ref / "losses.jsonl"), seed
    a, b = load_checkpoint(ref), load_checkpoint(run)
    assert a["step"] == b["step"] == 24
    for part in ("model", "ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k, seed)
    lk_a, lk_b = (json.loads((d / "likelihood.json").read_text()) for d in (ref, run))
    lk_a.pop("seconds"), lk_b.pop("seconds")
    assert lk_a == lk_b
    # the periodic samples interrupted by a kill were redone: one row per sample step
    rows = [r for r in read_jsonl(run / "metrics.jsonl") if "samples/nfe" in r]
    assert [r["step"] for r in rows] == [6, 12, 18, 24], rows
    assert sorted(p.name for p in (run / "samples").iterdir()) == sorted(
        p.name for p in (ref / "samples").iterdir()
    )
    assert not [p for p in run.rglob(".*") if ".tmp" in p.name]  # leftovers removed
    _assert_readable(run)


def test_torn_last_lines_are_trimmed_naming_the_file_and_a_torn_middle_is_an_error(tmp_path):
    common = [*RUN, "training.sample_every=0", "training.final_sample_n=0"]
    common += ["training.final_likelihood_n=0", "training.eval_every=0"]
    ref, run = tmp_path / "ref", tmp_path / "run"
    train(cfg_of(*common, "training.steps=12"), ref)
    train(cfg_of(*common, "training.steps=8"), run)
    for name in ("losses.jsonl", "metrics.jsonl"):
        with open(run / name, "a") as f:
            f.write('{"step": 9, "lo')  # a write cut short (full disk, kill)
    (run / "checkpoints" / ".last.abcd1234.tmp.pt").write_bytes(b"partial")
    with pytest.warns(UserWarning, match="dropped a torn last line") as caught:
        train(cfg_of(*common, "training.steps=12", "training.resume=auto"), run)
    named = sorted(Path(str(w.message).split(":")[0]).name for w in caught)
    assert named == ["losses.jsonl", "metrics.jsonl"], named
    assert read_jsonl(run / "losses.jsonl") == read_jsonl(ref / "losses.jsonl")
    assert not (run / "checkpoints" / ".last.abcd1234.tmp.pt").exists()
    lines = (run / "losses.jsonl").read_text().splitlines()
    lines.insert(2, "garbage")
    (run / "losses.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"corrupt run log .*losses\.jsonl, line 3"):
        train(cfg_of(*common, "training.steps=14", "training.resume=auto"), run)
