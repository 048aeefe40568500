"""Every ```python block of README.md runs on its own, as a user would paste it into a fresh file.

Each block runs in its own interpreter (a fresh namespace: a block that forgets an import fails),
from an empty temporary directory, with wandb disabled, matplotlib headless and one intra-op
thread (set here, in the harness: the library itself never changes torch's threads).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK_TIMEOUT_S = 120  # each block takes a few seconds; a block this slow must be made smaller

_SLUG = re.compile(r"\W+")


def python_blocks(text: str) -> list[tuple[str, str]]:
    """``(id, code)`` of each fenced python block; the id names the section heading and line."""
    blocks, section, fence, start, code = [], "top", None, 0, []
    for i, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if fence is None and stripped.startswith("```"):
            fence, start, code = stripped[3:].strip(), i, []
        elif fence is not None and stripped == "```":
            if fence == "python":
                blocks.append((f"L{start}_{section}", "".join(code)))
            fence = None
        elif fence is not None:
            code.append(line)
        elif line.startswith("#"):  # a heading (comments inside code blocks are not)
            section = _SLUG.sub("_", line.lstrip("#")).strip("_").lower()
    assert fence is None, f"unclosed ``` block from line {start}"
    return blocks


BLOCKS = python_blocks(README.read_text(encoding="utf-8"))

_HARNESS = (
    "import runpy, sys, torch\n"
    "torch.set_num_threads(1)\n"
    "runpy.run_path(sys.argv[1], run_name='__main__')\n"
)


def _python(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
        check=False,
    )


def test_readme_has_python_blocks_and_the_extractor_finds_them():
    assert len(BLOCKS) >= 5, [b[0] for b in BLOCKS]
    sample = (
        "# A\n```python\nx = 1\n```\ntext\n## B c\n```python\ny = 2\nz = 3\n```\n```bash\nls\n```\n"
    )
    assert python_blocks(sample) == [("L2_a", "x = 1\n"), ("L7_b_c", "y = 2\nz = 3\n")]


def test_readme_tells_python_users_how_to_set_threads():
    text = README.read_text(encoding="utf-8")
    api = text[text.index("## The Python API") : text.index("## Command lines")]
    assert "torch.set_num_threads(1)" in api


@pytest.mark.parametrize("block_id, code", BLOCKS, ids=[b[0] for b in BLOCKS])
def test_readme_python_block_runs_on_its_own(block_id: str, code: str, tmp_path: Path) -> None:
    script = tmp_path / f"{block_id}.py"
    script.write_text(code, encoding="utf-8")
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        WANDB_MODE="disabled",
        WANDB_SILENT="true",
        MPLBACKEND="Agg",
        SCORESDE_CACHE=str(tmp_path / "cache"),
        HOME=str(tmp_path),
    )
    env.pop("PYTHONPATH", None)
    out = _python(["-c", _HARNESS, str(script)], tmp_path, env)
    assert out.returncode == 0, (
        f"README block {block_id} failed (exit {out.returncode}):\n{code}\n"
        f"--- stderr ---\n{out.stderr[-4000:]}"
    )


_THREADS_PROBE = """
import torch
torch.set_num_threads(3)
import scoresde
from scoresde import VPSDE, GaussianMixture, ScoreModel, build_net, dsm_loss, log_likelihood, sample
from scoresde.data import get_dataset

sde = VPSDE()
gm = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.3)
get_dataset("moons", n=64, n_test=16).get_batch(torch.arange(8))
get_dataset("digits", "test")
model = ScoreModel(build_net("mlp", (2,)), sde)
dsm_loss(model, sde, gm.sample(16)).backward()
sample(sde, gm.score_fn(sde), (16, 2), method="unipc", steps=5)
log_likelihood(sde, model.score_fn(), gm.sample(4), trace="exact", rtol=1e-2, atol=1e-2)
print(torch.get_num_threads())
"""


def test_library_leaves_torch_threads_alone(tmp_path: Path) -> None:
    """Importing the package, reading data, training steps, sampling, likelihood: threads stay."""
    env = dict(os.environ, WANDB_MODE="disabled", MPLBACKEND="Agg")
    env.pop("OMP_NUM_THREADS", None)
    out = _python(["-c", _THREADS_PROBE], tmp_path, env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "3", "library code changed torch's intra-op thread count"
