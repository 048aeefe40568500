"""Appended run logs (``losses.jsonl``, ``metrics.jsonl``).

One JSON object per line, tolerant of a tear.

Appends are not atomic: a kill or a full disk can leave a torn last line. :func:`read_jsonl`
drops (and with ``repair=True`` trims from the file) a last line that does not parse, warning with
the file's name; a bad line before the last one is corruption and raises ValueError naming the file
and the line. :class:`JsonlLog` keeps, on resume, only the rows up to the resumed step.

"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from scoresde.io.atomic import write_text_atomic

__all__ = ["JsonlLog", "read_jsonl"]


def read_jsonl(path: str | Path, repair: bool = False) -> list[dict[str, Any]]:
    """Rows of a JSON-lines file ([] if it does not exist), tolerating a torn last line."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the run log {path}: {e}") from e
    lines = text.splitlines()
    rows: list[dict[str, Any]] = []
    for i, ln in enumerate(lines):
        if not ln.strip():
            continue
        try:
            row = json.loads(ln)
        except ValueError as e:
            row = e
        if not isinstance(row, dict):
            if i == len(lines) - 1:
                warnings.warn(
                    f"{path}: dropped a torn last line ({len(ln)} characters) left by an "
                    "interrupted write",
                    stacklevel=2,
                )
                if repair:
                    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
                break
            raise ValueError(
                f"corrupt run log {path}, line {i + 1}: not a JSON object: {ln[:80]!r}"
            )
        rows.append(row)
    return rows


class JsonlLog:
    """An append-only JSON-lines log (rank 0), flushed on every write; see :meth:`open`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def open(
        cls, path: str | Path, keep: Callable[[dict[str, Any]], bool] | None = None
    ) -> tuple[JsonlLog, list[dict[str, Any]]]:
        """``(log, kept rows)``. ``keep`` (resume): keep the rows for which ``keep(row)`` holds and
        rewrite the file atomically; ``None`` (a fresh run): start an empty file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict[str, Any]] = []
        if keep is None:
            if path.exists():
                path.unlink()
        else:
            rows = [r for r in read_jsonl(path) if keep(r)]
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))
        return cls(path), rows

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if rows:
            with open(self.path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
