"""retain_freed_memory: which C libraries it changes and what it reports, and that the
commands make it only when asked (``--retain-memory``), never in a test's own process.

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
from tensorpot.cli import main as cli


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


def test_commands_apply_it_only_when_asked(monkeypatch, capsys, tmp_path):
    """Before the command runs (here it then stops at its missing input)."""
    calls = []
    monkeypatch.setattr(cli, "retain_freed_memory", lambda: calls.append(1) or True)
    commands = [
        ["train", str(tmp_path / "run.yaml")],
        ["eval", "--model", "m.model", "--data", "d.xyz"],
        ["md", "--model", "m.model", "--structure", "s.xyz", "--steps", "1"],
    ]
    for command in commands:
        assert cli.main(command) == 2
        assert cli.main([*command, "--retain-memory"]) == 2
    assert calls == [1, 1, 1]
    capsys.readouterr()
