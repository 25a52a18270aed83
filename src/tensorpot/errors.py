"""Errors that reach the user as one line: what went wrong, and where."""

from __future__ import annotations


class TensorPotError(Exception):
    """Base class of every error tensorpot raises on purpose (the CLI prints it as one line)."""


class ConfigError(TensorPotError, ValueError):
    """A configuration key is unknown, has the wrong type, or a bad value."""


class DataError(TensorPotError, ValueError):
    """A data file cannot be used; the message names the file and the frame.

    Args:
        message: what is wrong.
        file: the file it was read from, if any.
        frame: the 0-based frame index inside the file, if known.
    """

    def __init__(self, message: str, file: str | None = None, frame: int | None = None):
        self.file = file
        self.frame = frame
        self.problem = message
        where = []
        if file is not None:
            where.append(str(file))
        if frame is not None:
            where.append(f"frame {frame}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
