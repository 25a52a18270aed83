"""Keep freed memory in the process, so large temporaries are not page-faulted on every call.

PyTorch's CPU tensors come from ``malloc``. glibc serves a block above its mmap threshold
(128 KiB, raised as blocks are freed, but never above 32 MiB) with a fresh mapping and unmaps it
when the block is freed, and it returns free memory at the top of its heap to the kernel. An
energy-and-forces call of a large cell makes many temporaries of tens to hundreds of MiB, so
every call asks the kernel again for zero-filled pages: 1.7 million page faults per call and
15 % of the call's CPU time in the kernel for a 5,324-atom fcc cell, 4.6 million and 26 % for
10,976 atoms (32 channels, L = 2, nu = 3, 2 threads; ``benchmarks/workloads.py --workload
fcc-sizes`` prints both, with this setting under ``--retain-memory``; a property of the
machine's paging, it is measured there rather than tested). :func:`retain_freed_memory` turns
both off: blocks come from the heap and freed memory stays there for the next call (after a
call or two, while the heap settles, the faults stop). The process keeps its peak resident
memory after a large call (and may hold a little more, through fragmentation), and every later
allocation of the process, the caller's included, follows these settings: it is a choice of the
program, never made by importing or calling the library. The ``tensorpot train``, ``eval`` and
``md`` commands make it when given ``--retain-memory``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4
_NEVER = -1  # mallopt takes a C int; glibc reads the trim threshold as size_t: -1 is the largest


def retain_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (no mmap for large blocks, no heap trimming).

    Affects the whole process from the call on. Returns ``True`` if both settings were applied,
    ``False`` where the C library is not glibc (then nothing is changed).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER))
