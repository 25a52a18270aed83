"""Stopping a long run cleanly on SIGINT or SIGTERM (Ctrl-C, or a batch system's notice before
it kills a job).

The first signal only records its name in a :class:`StopRequest`; the run checks it at a safe
point (the end of an MD step, the end of a training epoch), writes what it must and stops. A
second signal raises :class:`KeyboardInterrupt` at once, unless a file is being written
(``writing``): then the run stops after the write. The handlers are installed for the duration
of the ``with`` block only, and only in the main thread; the previous ones come back after it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["StopRequest", "stop_on_signals"]


@dataclass
class StopRequest:
    """The name of the first signal (None: none came), and whether a file is being written."""

    signal: str | None = None
    writing: bool = False


R = TypeVar("R", bound=StopRequest)


@contextmanager
def stop_on_signals(enabled: bool, request: R) -> Iterator[R]:
    """Record SIGINT and SIGTERM in ``request`` while the block runs (nothing when not
    ``enabled`` or outside the main thread)."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.signal is not None and not request.writing:
            raise KeyboardInterrupt
        request.signal = request.signal or signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
