"""The notebooks in notebooks/ run top to bottom (small settings), are committed without outputs,
and each ``.ipynb`` equals its jupytext percent-format script (``notebooks/<name>.py``, the source
that is edited, linted and reviewed).

Each notebook is executed with nbclient in a temporary copy (outputs are never written back into
notebooks/), with ``SCORESDE_NB_FAST=1`` in the kernel's environment, on a kernel that runs this
interpreter (``sys.executable``), so no ``ipykernel install`` is needed. A cell that raises fails
the test with the cell's traceback.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import jupytext  # a dev dependency: the pairing check must run, never be skipped
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))
SCRIPTS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.py"))
PAIRED_FORMATS = "ipynb,py:percent"
CELL_TIMEOUT_S = 240  # per cell; the fast settings take a few seconds per notebook


def test_every_notebook_has_a_script_and_every_script_a_notebook() -> None:
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS
    assert [Path(n).stem for n in NOTEBOOKS] == [Path(s).stem for s in SCRIPTS], (
        "each notebooks/<name>.ipynb needs its jupytext pair notebooks/<name>.py and vice versa "
        "(jupytext --set-formats ipynb,py:percent notebooks/<name>.ipynb)"
    )


def _cells(cells) -> list[tuple[str, str]]:
    out = []
    for c in cells:
        src = c["source"]
        out.append((c["cell_type"], "".join(src) if isinstance(src, list) else src))
    return out


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_matches_its_script(name: str) -> None:
    """Cell types and sources (not outputs) of the .ipynb equal those read from its .py pair."""
    nb = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
    script = NOTEBOOK_DIR / (Path(name).stem + ".py")
    paired = jupytext.read(script)
    assert nb["metadata"].get("jupytext", {}).get("formats") == PAIRED_FORMATS, name
    assert paired.metadata.get("jupytext", {}).get("formats") == PAIRED_FORMATS, script.name
    got, want = _cells(nb["cells"]), _cells(paired.cells)
    for i, (a, b) in enumerate(zip(got, want)):
        assert a == b, (
            f"{name} cell {i} differs from {script.name}; edit the .py and run "
            f"`jupytext --sync notebooks/{script.name}`:\n{a}\n!=\n{b}"
        )
    assert len(got) == len(want), f"{name} has {len(got)} cells, {script.name} {len(want)}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_has_no_outputs(name: str) -> None:
    nb = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
    assert nb["cells"], f"{name} has no cells"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        assert cell.get("outputs") == [], (
            f"{name}: cell {i} has outputs; clear them before committing"
        )
        assert cell.get("execution_count") is None, f"{name}: cell {i} has an execution count"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_first_cell_reads_fast_flag(name: str) -> None:
    nb = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
    first_code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert 'os.environ.get("SCORESDE_NB_FAST", "0") == "1"' in "".join(first_code["source"])


def _kernel_manager(tmp_path: Path):
    """A kernel manager running this interpreter, from a kernelspec written into tmp_path."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / "scoresde-test"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "scoresde tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name="scoresde-test", kernel_spec_manager=ksm)


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_in_fast_mode(name: str, tmp_path: Path, monkeypatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")

    work = tmp_path / "run"
    work.mkdir()
    path = work / name
    shutil.copy(NOTEBOOK_DIR / name, path)
    nb = nbformat.read(path, as_version=4)

    # The kernel inherits this environment: small settings, one thread, no wandb.
    monkeypatch.setenv("SCORESDE_NB_FAST", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # silences a debugger warning

    client = nbclient.NotebookClient(
        nb,
        km=_kernel_manager(tmp_path),
        timeout=CELL_TIMEOUT_S,
        allow_errors=False,
        resources={"metadata": {"path": str(work)}},
    )
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:  # the failing cell, not nbclient's stack
        pytest.fail(f"{name} failed in fast mode:\n{err}", pytrace=False)

    executed = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in executed), f"{name}: a cell did not run"
    # The committed file is untouched (outputs only ever live in the temporary copy).
    committed = json.loads((NOTEBOOK_DIR / name).read_text(encoding="utf-8"))
    assert all(c.get("outputs") == [] for c in committed["cells"] if c["cell_type"] == "code")
