"""Data-parallel training: 2 CPU processes (gloo) take the steps 1 process takes with the same
global batch, write the run's files once, and stop with one message when a rank dies."""

from __future__ import annotations

import csv
import os
import traceback
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tensorpot.training import train
from tensorpot.training import trainer as trainer_module
from tensorpot.training.checkpoint import list_checkpoints, load_checkpoint
from tensorpot.training.distributed import World
from tests.training.conftest import tiny_run


def _rank_main(rank: int, size: int, init: str, config: dict, die_in_epoch: int) -> None:
    """One process of a 2-process run: join the group, train, record the outcome in a file."""
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=size)
    real_epoch = trainer_module.train_epoch

    def dying(state, dataset, cfg, epoch, bar, *rest):
        if rank == 1 and epoch == die_in_epoch:
            os._exit(3)  # a process killed mid-run: no clean-up, no message
        return real_epoch(state, dataset, cfg, epoch, bar, *rest)

    trainer_module.train_epoch = dying
    outcome = Path(f"{init}.rank{rank}")
    try:
        train(config)
        outcome.write_text("ok")
    except Exception as err:  # recorded for the parent to check
        outcome.write_text(f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    finally:
        dist.destroy_process_group()


def _run_two(tmp_path: Path, config: dict, die_in_epoch: int = 0) -> list[str]:
    """Run 2 forked processes (fork: no second import of torch) and read their outcomes."""
    init = str(tmp_path / "rendezvous")
    mp.start_processes(
        _rank_main, args=(2, init, config, die_in_epoch), nprocs=2, join=True, start_method="fork"
    ) if not die_in_epoch else _spawn_allowing_death(init, config, die_in_epoch)
    return [Path(f"{init}.rank{r}").read_text() if Path(f"{init}.rank{r}").exists() else ""
            for r in range(2)]  # fmt: skip


def _spawn_allowing_death(init: str, config: dict, die_in_epoch: int) -> None:
    context = mp.start_processes(
        _rank_main, args=(2, init, config, die_in_epoch), nprocs=2, join=False,
        start_method="fork",
    )  # fmt: skip
    for process in context.processes:
        process.join(timeout=300)


def _config(frames_file: Path, out: Path, e0s: dict, **extra) -> dict:
    model = {"dtype": "float64"}
    config = tiny_run(frames_file, out, e0s, batch_size=3, max_num_epochs=2, threads=1,
                      max_train_frames=7, log_to_stdout=False, **extra)  # fmt: skip
    config["model"] = {**config["model"], **model}
    return config


@pytest.mark.parametrize("options", [{}, {"energy_loss_smoothing": 0.3, "optimizer": "adamw"}])
def test_two_processes_take_the_steps_of_one(tmp_path, frames_file, e0s, options):
    """7 frames in batches of 3 (the last one's second share is empty), float64: the weights
    after 2 epochs (6 steps) of 2 processes are those of 1 process, also with the smoothed
    energy loss, and rank 0 alone writes."""
    single = _config(frames_file, tmp_path / "one", e0s, **options)
    train(single)
    double = _config(frames_file, tmp_path / "two", e0s, **options)
    outcomes = _run_two(tmp_path, double)
    assert outcomes == ["ok", "ok"], outcomes
    one = load_checkpoint(list_checkpoints(tmp_path / "one" / "checkpoints")[-1][1])
    two = load_checkpoint(list_checkpoints(tmp_path / "two" / "checkpoints")[-1][1])
    assert one["step"] == two["step"] == 6
    for name, value in one["model"].items():
        torch.testing.assert_close(two["model"][name], value, rtol=1e-10, atol=1e-12, msg=name)
    for mine, theirs in zip(one["ema"]["shadow"], two["ema"]["shadow"], strict=True):
        torch.testing.assert_close(theirs, mine, rtol=1e-10, atol=1e-12)
    losses = [
        [
            float(row["train_loss"])
            for row in csv.DictReader((tmp_path / run / "log.csv").read_text().splitlines())
        ]
        for run in ("one", "two")
    ]  # the logged losses are the global batch's
    assert losses[1] == pytest.approx(losses[0], rel=1e-10)
    log = (tmp_path / "two" / "train.log").read_text()
    assert log.count("data-parallel: 2 processes, rank 0") == 1
    assert "rank 1" not in log.replace("rank 0", "")
    assert (tmp_path / "two" / "tiny.model").is_file()


def test_a_dead_rank_stops_the_run_and_resume_continues(tmp_path, frames_file, e0s):
    """Rank 1 dies as epoch 3 starts: rank 0 stops with one message naming the failure and
    --resume; a resumed run (here one process) continues from the checkpoint of epoch 2."""
    config = _config(frames_file, tmp_path / "run", e0s, checkpoint_interval=2)
    config["max_num_epochs"] = 3
    outcomes = _run_two(tmp_path, config, die_in_epoch=3)
    assert outcomes[1] == ""
    first = outcomes[0].splitlines()[0]
    assert first.startswith("WorldError: rank 0 of 2:"), outcomes[0]
    assert "--resume" in first
    assert [e for e, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [2]
    resumed = train(config, resume=True)
    assert resumed.epochs_run == 3


def test_one_process_world_changes_nothing():
    world = World()
    grad = torch.ones(3)
    assert world.all_reduce(grad) is grad and world.broadcast({"a": 1}) == {"a": 1}
    assert world.shard([4, 5, 6]) == [4, 5, 6]
    assert World(rank=1, size=2).shard([4, 5, 6]) == [5]
