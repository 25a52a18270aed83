"""retain_freed_memory: which C libraries it changes and what it reports.

Its effect, that freed large blocks are reused instead of page-faulted again, depends on the
kernel's paging and the machine; it is measured by ``benchmarks/workloads.py --workload
fcc-sizes`` (page faults per call, with and without ``--retain-memory``), not here.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tensorpot import allocator


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="sets glibc's malloc parameters",
)
def test_glibc_accepts_both_settings():
    """In a child process: the setting lasts for the whole process."""
    script = "from tensorpot.allocator import retain_freed_memory; print(retain_freed_memory())"
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "True"


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.retain_freed_memory() is False
