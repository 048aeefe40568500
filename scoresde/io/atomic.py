"""Atomic file writes: write a temporary file in the target's directory, fsync it, ``os.replace``.

A reader (or a resumed run) sees either the old file or the complete new one, never a partial
write, even when the process is killed mid-write. Every result file and checkpoint goes through
:func:`atomic_write`.

A write that fails (no space left, a read-only or unwritable directory, a file size limit) raises
:class:`WriteError`, an ``OSError`` whose message names the final path and the cause; the previous
file under the final name is left untouched and the temporary file is removed. Temporary files of
writes killed mid-way (``.<stem>.<8 random chars>.tmp<suffix>``) are removed by
:func:`remove_stale_temps`, which a run calls on start.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

__all__ = [
    "WriteError",
    "atomic_write",
    "remove_stale_temps",
    "save_torch_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

# mkstemp's names: prefix + 8 characters from [a-z0-9_] + suffix (see tempfile._RandomNameSequence)
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?$")


class WriteError(OSError):
    """A file could not be written; ``filename`` is the final path, ``errno`` the cause's code.

    The message names the path and the cause, e.g. ``cannot write run/checkpoints/last.pt: No
    space left on device [Errno 28]; the previous file is unchanged``.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def _write_error(path: Path, cause: OSError, existed: bool) -> WriteError:
    reason = cause.strerror or str(cause) or type(cause).__name__
    code = f" [Errno {cause.errno}]" if cause.errno else ""
    kept = "; the previous file is unchanged" if existed else ""
    return WriteError(cause.errno, f"cannot write {path}: {reason}{code}{kept}", str(path))


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it onto ``path``.

    Raises :class:`WriteError` (naming ``path`` and the cause) when creating, writing, syncing or
    renaming fails with an ``OSError``; other exceptions of ``write`` pass through unchanged. In
    every failure the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    existed = path.exists()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent
        )
    except OSError as e:
        raise _write_error(path, e, existed) from e
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        raise _write_error(path, e, existed) from e
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (best effort: not every file system lets a directory be synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` to ``path``."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_json_atomic(
    path: str | Path, obj: Any, indent: int = 2, default: Callable | None = None
) -> Path:
    """Atomically write ``obj`` as JSON (``default`` converts objects json cannot)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + "\n")


class _RecordingWriter:
    """A binary file that keeps the ``OSError`` of a failed write.

    ``torch.save`` turns a failing write into ``RuntimeError: [enforce fail at
    inline_container.cc] ... unexpected pos``; keeping the original error lets us report the cause.
    """

    def __init__(self, f: BinaryIO):
        self.f = f
        self.error: OSError | None = None

    def write(self, b: bytes) -> int:
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def _torch_save(obj: Any, path: Path) -> None:
    with open(path, "wb") as f:
        w = _RecordingWriter(f)
        try:
            torch.save(obj, w)
            f.flush()
        except RuntimeError as e:
            if w.error is not None:
                raise w.error from e
            raise


def save_torch_atomic(path: str | Path, obj: Any) -> Path:
    """Atomically ``torch.save(obj)`` to ``path`` (a failed write raises :class:`WriteError`)."""
    return atomic_write(path, lambda p: _torch_save(obj, p))


def remove_stale_temps(
    directory: str | Path, recursive: bool = True, older_than_s: float = 0.0
) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``directory``.

    Only names of the writer's pattern ``.<stem>.<8 chars>.tmp[.<suffix>]`` are touched (and only
    those last modified more than ``older_than_s`` seconds ago); returns the removed paths. Call it
    when a run starts, before any writer of that run is active. A missing directory removes nothing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    if older_than_s < 0:
        raise ValueError(f"older_than_s must be >= 0, got {older_than_s!r}")
    candidates = directory.rglob(".*") if recursive else directory.glob(".*")
    now = time.time()
    removed = []
    for p in sorted(candidates):
        if not _TEMP_NAME.match(p.name) or not p.is_file() or p.is_symlink():
            continue
        try:
            if now - p.stat().st_mtime < older_than_s:
                continue
            p.unlink()
        except FileNotFoundError:
            continue
        except OSError as e:
            msg = f"cannot remove stale temporary file {p}: {e.strerror or e}"
            raise WriteError(e.errno, msg, str(p)) from e
        removed.append(p)
    return removed
