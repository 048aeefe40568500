"""Atomic file writes: write a temporary file in the target's directory, fsync it, ``os.replace``.

A reader (or a resumed run) sees either the old file or the complete new one, never a partial
write, even when the process is killed mid-write. Every result file and checkpoint goes through
:func:`atomic_write`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["atomic_write", "save_torch_atomic", "write_json_atomic", "write_text_atomic"]


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.stem}.", suffix=".tmp" + path.suffix, dir=path.parent
    )
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Atomically write ``text`` to ``path``."""
    return atomic_write(path, lambda p: p.write_text(text))


def write_json_atomic(
    path: str | Path, obj: Any, indent: int = 2, default: Callable | None = None
) -> Path:
    """Atomically write ``obj`` as JSON (``default`` converts objects json cannot)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + "\n")


def save_torch_atomic(path: str | Path, obj: Any) -> Path:
    """Atomically ``torch.save(obj)`` to ``path``."""
    return atomic_write(path, lambda p: torch.save(obj, p))
