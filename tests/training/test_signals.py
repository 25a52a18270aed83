"""A run stopped by SIGTERM (``handle_signals``) ends its epoch, writes a checkpoint, and a
resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import csv
import os
import signal
import time

from tensorpot.config import parse_run_config
from tensorpot.training import train

from .conftest import tiny_run


def losses(folder) -> list[tuple[str, str]]:
    with open(folder / "log.csv", encoding="utf-8") as handle:
        return [(row["epoch"], row["train_loss"]) for row in csv.DictReader(handle)]


def test_sigterm_stops_after_the_epoch_and_resume_is_exact(frames_file, e0s, tmp_path):
    raw = tiny_run(frames_file, tmp_path / "stopped", e0s, max_num_epochs=4)
    calls = []

    def clock() -> float:  # read a few times per epoch: the third read falls in epoch 1 or 2
        calls.append(None)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return time.monotonic()

    before = signal.getsignal(signal.SIGTERM)
    result = train(parse_run_config(raw), clock=clock, handle_signals=True)
    assert signal.getsignal(signal.SIGTERM) == before
    assert result.stopped == "SIGTERM" and 1 <= result.epochs_run < 4
    assert result.error_tables == {} and not result.errors_path.exists()
    log = (tmp_path / "stopped" / "train.log").read_text(encoding="utf-8")
    assert f"stopped by SIGTERM after epoch {result.epochs_run}, checkpoint written" in log

    resumed = train(parse_run_config(raw), resume=True)
    straight = train(parse_run_config({**raw, "output_dir": str(tmp_path / "straight")}))
    assert resumed.stopped is None and resumed.errors_path.exists()
    assert losses(tmp_path / "stopped") == losses(tmp_path / "straight")
    assert resumed.best_valid_loss == straight.best_valid_loss
