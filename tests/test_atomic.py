"""Atomic writes under failure: a full disk, a read-only directory, a file size limit, a kill -9.

Each failing write must raise an ``OSError`` (``WriteError``) naming the final path and the cause,
keep the previous file under the final name intact and readable, and leave no temporary file.
The disk faults are injected beneath the writer (the file object it writes to, ``mkstemp``,
``os.replace``) because the tests run as root, where a chmod'ed directory stays writable; one test
makes the kernel itself refuse the write (``RLIMIT_FSIZE``) and one kills a writer with SIGKILL.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

from scoresde.io import atomic
from scoresde.io.atomic import (
    WriteError,
    atomic_write,
    remove_stale_temps,
    save_torch_atomic,
    write_json_atomic,
)
from scoresde.io.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def _state(step: int, n: int = 64) -> dict:
    g = torch.Generator().manual_seed(step)
    return {"model": {"w": torch.randn(n, generator=g)}, "step": step, "config": {"lr": 1e-3}}


class _FullDisk:
    """A binary file that accepts ``budget`` bytes, then fails like a full disk (ENOSPC)."""

    def __init__(self, f, budget: int):
        self.f, self.budget = f, budget

    def write(self, b) -> int:
        if len(b) > self.budget:
            self.budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _full_disk_open(budget: int):
    real_open = open

    def fake_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return _FullDisk(f, budget) if "w" in mode else f

    return fake_open


def _only(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("budget", [0, 700, 5000])
def test_full_disk_during_checkpoint_write_keeps_previous_and_names_path(
    tmp_path, monkeypatch, budget
):
    ckpt = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(ckpt, _state(1))
    monkeypatch.setattr(atomic, "open", _full_disk_open(budget), raising=False)
    with pytest.raises(WriteError) as info:
        save_checkpoint(ckpt, _state(2, n=4096))
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert err.filename == str(ckpt)
    msg = str(err)
    assert str(ckpt) in msg and "No space left on device" in msg and "unchanged" in msg
    assert "inline_container" not in msg and "enforce fail" not in msg
    monkeypatch.undo()
    back = load_checkpoint(ckpt)
    assert back["step"] == 1 and torch.equal(back["model"]["w"], _state(1)["model"]["w"])
    assert _only(ckpt.parent) == ["last.pt"]  # no temp file, no partial file


def test_full_disk_on_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "open", _full_disk_open(10), raising=False)
    target = tmp_path / "out" / "model.pt"
    with pytest.raises(WriteError, match=r"cannot write .*model\.pt: No space left on device"):
        save_torch_atomic(target, {"w": torch.zeros(1000)})
    assert _only(target.parent) == []


@pytest.mark.parametrize(
    "code, text", [(errno.EROFS, "Read-only file system"), (errno.EACCES, "Permission denied")]
)
def test_unwritable_directory_names_path_and_cause(tmp_path, monkeypatch, code, text):
    target = tmp_path / "likelihood.json"
    write_json_atomic(target, {"bpd": 1.5})

    def refuse(*args, **kwargs):
        raise OSError(code, text)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(WriteError) as info:
        write_json_atomic(target, {"bpd": 9.9})
    assert info.value.errno == code and str(target) in str(info.value) and text in str(info.value)
    monkeypatch.undo()
    assert json.loads(target.read_text()) == {"bpd": 1.5}
    assert _only(tmp_path) == ["likelihood.json"]


def test_failed_rename_removes_temp_and_keeps_previous(tmp_path, monkeypatch):
    target = tmp_path / "samples.npz"
    target.write_bytes(b"old")

    def refuse(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(WriteError, match=r"samples\.npz: Operation not permitted"):
        atomic_write(target, lambda p: p.write_bytes(b"new content"))
    monkeypatch.undo()
    assert target.read_bytes() == b"old" and _only(tmp_path) == ["samples.npz"]


def test_error_that_is_not_io_passes_through_and_cleans_up(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(target, {"a": object()})
    assert _only(tmp_path) == []


def test_write_error_pickles_for_worker_processes(tmp_path):
    import pickle

    err = atomic._write_error(tmp_path / "a.pt", OSError(errno.ENOSPC, "No space"), True)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is WriteError and str(back) == str(err) and back.errno == errno.ENOSPC


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kernel_refused_write_file_size_limit(tmp_path):
    """The real C++ writer of torch.save hits a kernel limit (EFBIG): same guarantees."""
    code = f"""
        import resource, signal, torch
        from scoresde.io.atomic import WriteError
        from scoresde.io.checkpoint import load_checkpoint, save_checkpoint
        path = {str(tmp_path / "last.pt")!r}
        save_checkpoint(path, {{"model": {{"w": torch.ones(10)}}, "step": 1, "config": {{}}}})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.RLIM_INFINITY))
        try:
            save_checkpoint(path, {{"model": {{"w": torch.ones(100000)}}, "step": 2, "config": {{}}}})
        except WriteError as e:
            print("ERR", e.errno, e)
        print("STEP", load_checkpoint(path)["step"])
    """
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert f"ERR {errno.EFBIG} cannot write {tmp_path / 'last.pt'}: File too large" in out.stdout
    assert "STEP 1" in out.stdout and _only(tmp_path) == ["last.pt"]


def test_kill_mid_write_then_remove_stale_temps(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    save_checkpoint(run / "checkpoints" / "last.pt", _state(1))
    code = f"""
        import os, signal
        from scoresde.io.atomic import atomic_write
        def half_then_die(p):
            p.write_bytes(b"PK partial")
            os.kill(os.getpid(), signal.SIGKILL)
        atomic_write({str(run / "checkpoints" / "last.pt")!r}, half_then_die)
    """
    out = _run(code, tmp_path)
    assert out.returncode == -9
    left = [p for p in (run / "checkpoints").iterdir() if p.name != "last.pt"]
    assert len(left) == 1 and left[0].name.startswith(".last.") and left[0].name.endswith(".tmp.pt")
    assert load_checkpoint(run)["step"] == 1  # the final name still holds the previous checkpoint
    # the writer's other temp names, and files that must survive
    fd, grid = tempfile.mkstemp(prefix=".step_000100.", suffix=".tmp.png", dir=run)
    os.close(fd)
    fd, js = tempfile.mkstemp(prefix=".likelihood.", suffix=".tmp.json", dir=run)
    os.close(fd)
    keep = [".hydra", "notes.tmp.txt", ".gitignore", "losses.jsonl"]
    (run / ".hydra").mkdir()
    for name in keep[1:]:
        (run / name).write_text("x")
    assert remove_stale_temps(run, older_than_s=3600) == []  # all are fresh
    removed = remove_stale_temps(run)
    assert sorted(removed) == sorted([left[0], Path(grid), Path(js)])
    assert sorted(p.name for p in run.iterdir()) == sorted(keep + ["checkpoints"])
    assert _only(run / "checkpoints") == ["last.pt"]
    assert remove_stale_temps(tmp_path / "missing") == []
    with pytest.raises(ValueError, match="older_than_s"):
        remove_stale_temps(run, older_than_s=-1)
