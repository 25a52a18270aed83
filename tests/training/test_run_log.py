"""The text log of a run: set-up facts and one line per epoch in train.log and on stdout."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest

from tensorpot.training import train
from tensorpot.training import trainer as trainer_module
from tests.training.conftest import tiny_run

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
EPOCH = re.compile(r"^epoch (\d+)/(\d+), train loss \S+, valid loss \S+, energy RMSE \S+ meV/atom, "
                   r"force RMSE \S+ meV/Å, lr \S+, \S+ s")  # fmt: skip


def epochs(lines: list[str]) -> list[int]:
    """The epoch numbers of the epoch lines, in order."""
    return [int(m[1]) for m in map(EPOCH.match, lines) if m]


def file_lines(path) -> list[str]:
    """The lines of train.log that start with a time stamp, without it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [STAMP.sub("", line) for line in lines if STAMP.match(line)]


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_set_up_and_epochs_reach_the_log_file_and_stdout(
    tmp_path, capsys, frames_file, test_frames_file, e0s
):
    out = tmp_path / "run"
    config = tiny_run(frames_file, out, e0s, max_num_epochs=3, progress_bar=True,
                      test_files=[str(test_frames_file)])  # fmt: skip
    train(config)
    captured = capsys.readouterr()
    stdout = captured.out.splitlines()
    assert epochs(stdout) == [1, 2, 3]
    text = "\n".join(stdout)
    assert "frames: 8 training, 2 validation, 3 test (test600), 0 isolated-atom" in text
    assert re.search(r"E0s \(eV\): H -13\.58\d*, C -1029\.\d+, N -\d+\.\d+, O -\d+\.\d+", text)
    model = re.search(r"avg_num_neighbors (\S+), scale (\S+), shift (\S+), (\d+) parameters, "
                      r"float64 on cpu", text)  # fmt: skip
    assert model and float(model[1]) > 1 and int(model[4]) > 0
    assert "\r" not in captured.err and "tiny" not in captured.err  # no bar off a terminal
    logged = file_lines(out / "train.log")
    assert epochs(logged) == [1, 2, 3]
    assert [line for line in stdout if EPOCH.match(line)] == [
        line for line in logged if EPOCH.match(line)
    ]


def test_a_resumed_run_appends_to_the_log(tmp_path, capsys, frames_file, e0s):
    out = tmp_path / "run"
    config = tiny_run(frames_file, out, e0s, max_num_epochs=3)
    train({**config, "max_num_epochs": 2})
    first = (out / "train.log").read_text(encoding="utf-8")
    train(config, resume=True)
    text = (out / "train.log").read_text(encoding="utf-8")
    assert text.startswith(first)
    resumed = [STAMP.sub("", line) for line in text[len(first) :].splitlines()]
    assert any(re.match(r"resuming \S+tiny_epoch-2\.pt after epoch 2$", r) for r in resumed)
    assert epochs(resumed) == [3]
    assert epochs(file_lines(out / "train.log")) == [1, 2, 3]
    assert epochs(capsys.readouterr().out.splitlines()) == [1, 2, 3]


def test_log_to_stdout_false_keeps_stdout_quiet(tmp_path, capsys, frames_file, e0s):
    out = tmp_path / "run"
    train(tiny_run(frames_file, out, e0s, max_num_epochs=2, log_to_stdout=False))
    assert capsys.readouterr().out == ""
    assert epochs(file_lines(out / "train.log")) == [1, 2]


def test_logging_is_left_as_it_was(tmp_path, frames_file, e0s, monkeypatch):
    """The handlers and the level exist only during train(), also when a run is stopped."""
    package, root = logging.getLogger("tensorpot"), logging.getLogger()
    before = (list(package.handlers), package.level, list(root.handlers), root.level)
    out = tmp_path / "run"
    train(tiny_run(frames_file, out, e0s, max_num_epochs=1))
    assert (list(package.handlers), package.level, list(root.handlers), root.level) == before

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module, "train_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(frames_file, tmp_path / "stopped", e0s))
    assert (list(package.handlers), package.level, list(root.handlers), root.level) == before
    assert file_lines(tmp_path / "stopped" / "train.log")[-1] == "error: run stopped (interrupted)"


def test_epoch_lines_do_not_break_into_the_progress_bar(tmp_path, frames_file, e0s, monkeypatch):
    """stdout and stderr on one terminal: every epoch line starts a line of its own."""
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    train(tiny_run(frames_file, tmp_path / "run", e0s, max_num_epochs=3, progress_bar=True))
    shown = terminal.getvalue()
    assert "batch" in shown  # the bar was drawn
    assert epochs(re.split(r"[\r\n]", shown)) == [1, 2, 3]  # each at the start of a line
