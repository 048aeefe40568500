"""The one command-line runner: exit codes, one `error:` line, the debug switch, Hydra's errors."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from scoresde.cli import EXIT_BAD_INPUT, EXIT_NON_FINITE, EXIT_OTHER, exit_code, run_command
from scoresde.errors import NonFiniteError
from scoresde.io import distributed
from scoresde.training.trainer import NonFiniteLossError


def _run(argv, main, capsys, monkeypatch, tmp_path, debug=False):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCORESDE_DEBUG", "1" if debug else "0")
    with pytest.raises(SystemExit) as e:
        run_command("train", "config", main, argv=[*argv, f"hydra.run.dir={tmp_path}/run"])
    err = capsys.readouterr().err.strip().splitlines()
    return e.value.code, err


def _raise(exc):
    def main(cfg, ctx):
        raise exc

    return main


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ValueError("training.lr must be > 0, got -1"), EXIT_BAD_INPUT),
        (TypeError("task.y must be an int"), EXIT_BAD_INPUT),
        (FileNotFoundError(2, "No such file or directory", "/nope/last.pt"), EXIT_BAD_INPUT),
        (PermissionError(13, "Permission denied", "/ro/samples.npz"), EXIT_BAD_INPUT),
        (NonFiniteError("loss is nan at step 7"), EXIT_NON_FINITE),
        (NonFiniteLossError("loss is nan at step 7"), EXIT_NON_FINITE),
        (RuntimeError("something broke"), EXIT_OTHER),
        (ConnectionError("rendezvous failed"), EXIT_OTHER),
    ],
)
def test_library_errors_end_in_one_error_line_and_their_exit_code(
    exc, code, capsys, monkeypatch, tmp_path
):
    got, err = _run(["logger=none"], _raise(exc), capsys, monkeypatch, tmp_path)
    assert got == code == exit_code(exc)
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "Traceback" not in err[0] and "HYDRA_FULL_ERROR" not in err[0]
    key = getattr(exc, "filename", None) or str(exc).split()[0]
    assert key in err[0]


def test_debug_switch_prints_the_traceback_before_the_error_line(capsys, monkeypatch, tmp_path):
    code, err = _run([], _raise(ValueError("bad x")), capsys, monkeypatch, tmp_path, debug=True)
    assert code == 2 and any("Traceback" in ln for ln in err) and err[-1] == "error: bad x"


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("foo=1", ["'foo'", "seed", "training"]),
        ("training.stepz=3", ["'training.stepz'", "steps", "batch_size"]),
        ("sde=zz", ["sde=zz", "subvp, ve, vp"]),
        ("model=nope", ["model=nope", "mlp"]),
        ("seed=x", ["seed", "'x'"]),
        ("threads=-1", ["threads", "-1"]),
        ("threads=two", ["threads", "'two'"]),
        ("device=cuda:7", ["device=cuda:7", "cpu"]),
        ("device=tpu", ["device", "'tpu'"]),
        ("sde=[", ["override"]),
    ],
)
def test_config_errors_name_the_key_and_the_choices(override, names, capsys, monkeypatch, tmp_path):
    def main(cfg, ctx):
        return 0

    code, err = _run([override], main, capsys, monkeypatch, tmp_path)
    assert code == EXIT_BAD_INPUT, err
    assert len(err) == 1 and err[0].startswith("error: "), err
    for n in names:
        assert n in err[0], (n, err[0])


def test_a_good_run_returns_the_library_result_with_threads_seed_and_device_set(
    monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    seen = {}

    def main(cfg, ctx):
        seen.update(threads=torch.get_num_threads(), dev=ctx.device, out=ctx.out_dir)
        seen["r"] = torch.rand(1).item()
        return "done"

    old = torch.get_num_threads()
    try:
        out = run_command(
            "train", "config", main, argv=["threads=1", "seed=5", f"hydra.run.dir={tmp_path}/r"]
        )
    finally:
        torch.set_num_threads(old)
    assert out == "done" and seen["threads"] == 1 and seen["dev"] == torch.device("cpu")
    expected = torch.rand(1, generator=torch.Generator().manual_seed(5)).item()
    assert seen["out"] == tmp_path / "r" and seen["r"] == expected


# ------------------------------------------------------------------------- scoresde.io.distributed
def test_shards_cover_every_index_once_and_interleave_inverts_them():
    n, world = 11, 3
    infos = [distributed.ProcessInfo(r, world) for r in range(world)]
    parts = [distributed.shard(n, i) for i in infos]
    assert sorted(torch.cat(parts).tolist()) == list(range(n))
    assert torch.equal(distributed.interleave(parts, n), torch.arange(n))
    few = [distributed.shard(2, i) for i in infos]  # a rank with no items
    assert torch.equal(distributed.interleave([few[0], few[1], torch.empty(0)], 2), torch.arange(2))
    with pytest.raises(ValueError, match="expected 12"):
        distributed.interleave(parts, 12)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, out):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    info = distributed.init()
    assert info.world == world and info.rank == rank
    n = 7
    idx = distributed.shard(n, info)
    full = distributed.gather(idx.double()[:, None] * 10, n)
    path = distributed.broadcast_object(out if rank == 0 else None)
    if rank == 0:
        torch.save(full, path)
    torch.distributed.destroy_process_group()


def test_gather_on_two_gloo_processes_puts_rows_back_in_item_order(tmp_path):
    out = str(tmp_path / "full.pt")
    mp.spawn(_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    full = torch.load(out, weights_only=True)
    assert torch.equal(full[:, 0], torch.arange(7).double() * 10)


def test_a_missing_cuda_device_is_bad_input():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="device=cuda"):
        distributed.resolve_device("cuda")
    assert distributed.resolve_device("auto") == torch.device("cpu")


def test_a_run_start_removes_the_temp_files_of_writes_killed_before(tmp_path):
    """Rank 0 cleans the run directory of the atomic writer's leftovers, and only of those."""
    from omegaconf import OmegaConf

    from scoresde.cli.runner import prepare

    (tmp_path / "checkpoints").mkdir()
    stale = [
        tmp_path / ".likelihood.ab12cd34.tmp.json",
        tmp_path / "checkpoints/.last.x9y8z7w6.tmp.pt",
    ]
    keep = [
        tmp_path / "likelihood.json",
        tmp_path / "checkpoints" / "last.pt",
        tmp_path / ".hidden",
    ]
    for p in stale + keep:
        p.write_text("x")
    prepare(OmegaConf.create({"threads": None, "device": "cpu"}), "likelihood", tmp_path)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
