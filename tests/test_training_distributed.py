"""Data-parallel training (gloo, 2 processes on loopback): ranks stay identical, equal one
process with the doubled batch on the same crops, rank 0 alone writes, and --resume works."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from sac.cli import main

from ddp_worker import initial, train, worker
from synthetic import write_disk_folder

B, G, EPOCHS, STEPS = 1, 2, 2, 2  # per process: 1 SAM crop + 1 generator-only crop


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ddp(out: Path, result: Path, resume: bool = False, stop_at: int | None = None,
         epochs: int = EPOCHS, generator_steps: int = 0) -> list[dict[str, torch.Tensor]]:
    mp.spawn(worker, args=(2, _port(), str(out), str(result), B, G, epochs, STEPS, resume,
                           stop_at, generator_steps), nprocs=2, join=True)
    return [torch.load(f"{result}.{r}.pt", weights_only=True) for r in range(2)]


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory) -> tuple[Path, list[dict[str, torch.Tensor]]]:
    root = tmp_path_factory.mktemp("ddp")
    return root / "run", _ddp(root / "run", root / "tensors")


def test_ranks_agree_and_equal_one_process_with_the_doubled_batch(ddp_run, tmp_path: Path
                                                                  ) -> None:
    _, (rank0, rank1) = ddp_run
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k  # one update, applied alike everywhere
    single = train(tmp_path / "single", 2 * B, 2 * G, EPOCHS, STEPS)
    start = initial()
    moved = max(float((single[k] - start[k]).abs().max()) for k in single)
    assert moved > 1e-3  # 4 steps at lr 1e-3 moved the tensors by about that much ...
    for k in single:  # ... and 2 x batch 1 moved them as 1 x batch 2 did, to a tenth of one
        # step (Adam divides by the gradients' size, so float noise in tiny gradients shows)
        torch.testing.assert_close(rank0[k], single[k], atol=1e-4, rtol=0)


def test_rank_zero_alone_writes_the_run_folder(ddp_run) -> None:
    run, _ = ddp_run
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, EPOCHS + 1))  # once, not once per rank
    assert json.loads((run / "train_config.json").read_text())["processes"] == 2
    assert {p.name for p in run.iterdir()} == {"log.jsonl", "train_config.json", "model",
                                               "last"}


def test_resumed_ddp_run_ends_where_an_uninterrupted_one_does(ddp_run, tmp_path: Path
                                                              ) -> None:
    _, (rank0, _) = ddp_run
    _ddp(tmp_path / "run", tmp_path / "a", stop_at=STEPS + 1)  # stopped inside epoch 2
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(log) == 1
    again = _ddp(tmp_path / "run", tmp_path / "b", resume=True)
    for k in rank0:
        assert torch.equal(again[0][k], rank0[k]) and torch.equal(again[1][k], rank0[k]), k


def test_generator_stage_runs_on_rank_zero_and_reaches_every_rank(tmp_path: Path) -> None:
    rank0, rank1 = _ddp(tmp_path / "run", tmp_path / "t", epochs=1, generator_steps=3)
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), k
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r.get("stage") for r in log][:1] == ["generator"]  # logged once, by rank 0


def test_train_cli_nproc_runs_torchrun(tmp_path: Path, capsys) -> None:
    data = write_disk_folder(tmp_path / "data", n=4, size=96)
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--format", "folder", "-o", str(run), "--tiny",
            "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "1",
            "--generator-batch", "2", "--quiet", "--no-tune", "--nproc", "2"]
    assert main(args) == 0
    assert json.loads((run / "train_config.json").read_text())["processes"] == 2
    assert len((run / "log.jsonl").read_text().splitlines()) == 1
    assert (run / "model" / "config.json").is_file()
