"""retain_freed_memory: a freed large block is reused instead of being page-faulted again."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from tensorpot import allocator

#: allocate, fill and free a 256 MiB tensor (above glibc's largest mmap threshold) four times,
#: as a call of a large cell does with its temporaries; print the page faults of the last time
#: (the heap takes a call or two to settle)
SCRIPT = """
import resource, sys, torch
from tensorpot.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def faults():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt + r.ru_majflt
for _ in range(4):
    before = faults()
    x = torch.ones(2**25, dtype=torch.float64)
    del x
print(faults() - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="sets glibc's malloc parameters",
)
def test_freed_block_is_reused_without_page_faults():
    default, retained = _faults("default"), _faults("retain")
    # the C library's default maps the block anew: one fault per 4 KiB page (65,536), or per
    # huge page where the kernel backs every mapping with them
    assert default >= 100
    assert retained < max(default / 10, 64)


def test_other_platforms_are_left_alone(monkeypatch):
    monkeypatch.setattr(allocator.sys, "platform", "darwin")
    assert allocator.retain_freed_memory() is False
