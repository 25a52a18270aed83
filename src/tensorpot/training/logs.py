"""What a training run writes as it goes: the per-epoch CSV log, the optional TensorBoard
writer, and the text log (:func:`run_log`: ``train.log`` and stdout, for the duration of the
run only).
"""

from __future__ import annotations

import csv
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

HISTORY_COLUMNS = (
    "epoch", "stage", "lr", "train_loss", "valid_loss",
    "valid_energy_rmse_meV_per_atom", "valid_forces_rmse_meV_per_A",
    "valid_dipole_rmse", "valid_polarizability_rmse", "time_s",
)  # fmt: skip


class History:
    """The per-epoch CSV log; on resume, rows after the checkpoint's epoch are dropped."""

    def __init__(self, path: Path, keep_epochs: int = 0):
        self.path = Path(path)
        rows = []
        if keep_epochs > 0 and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= keep_epochs]
        with open(self.path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, HISTORY_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        """Append one epoch's row (missing columns stay empty)."""
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, HISTORY_COLUMNS, extrasaction="ignore").writerow(row)


def tensorboard_writer(folder: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` when ``torch.utils.tensorboard`` imports, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(folder))


class _RunFormatter(logging.Formatter):
    """The message alone (``warning: ...`` for warnings and errors), time-stamped if asked."""

    def __init__(self, stamped: bool):
        super().__init__(datefmt="%Y-%m-%d %H:%M:%S")
        self.stamped = stamped

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        return f"{self.formatTime(record, self.datefmt)} {text}" if self.stamped else text


class _BarSafeHandler(logging.StreamHandler):
    """Writes through ``tqdm.write``, which lifts a live progress bar off the terminal first
    and redraws it below, so log lines and the bar do not garble each other."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()  # a line per epoch, visible at once also when stdout is a pipe
        except Exception:  # logging's contract: report, never raise
            self.handleError(record)


@contextmanager
def run_log(path: Path, to_stdout: bool = True) -> Iterator[None]:
    """For the duration of a run: the ``tensorpot`` logger's records at INFO and above go to
    ``path`` (appended, time-stamped) and, when ``to_stdout``, to stdout.

    The handlers are removed and the logger's level restored on exit, so nothing stays changed
    in the process. Records still propagate to the caller's own handlers; a program that shows
    them itself turns the stdout copy off (``log_to_stdout: false``). When the run ends with an
    exception, the file says so (the caller reports the exception itself).
    """
    package = logging.getLogger("tensorpot")
    level = package.level
    to_file = logging.FileHandler(path, mode="a", encoding="utf-8")
    to_file.setFormatter(_RunFormatter(stamped=True))
    handlers: list[logging.Handler] = [to_file]
    if to_stdout:
        handlers.append(_BarSafeHandler(sys.stdout))
        handlers[-1].setFormatter(_RunFormatter(stamped=False))
    if package.getEffectiveLevel() > logging.INFO:
        package.setLevel(logging.INFO)
    for handler in handlers:
        package.addHandler(handler)
    try:
        yield
    except BaseException as err:
        why = "interrupted" if isinstance(err, KeyboardInterrupt) else type(err).__name__
        detail = " ".join(str(err).split())
        to_file.handle(
            package.makeRecord(
                package.name, logging.ERROR, __file__, 0,
                "run stopped (%s)%s", (why, f": {detail}" if detail else ""), None,
            )
        )  # fmt: skip
        raise
    finally:
        for handler in handlers:
            package.removeHandler(handler)
            handler.close()
        package.setLevel(level)
