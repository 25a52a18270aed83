"""``tensorpot md``: a run and its files, bad input as one line, refusals, restart, signals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import ase.io
import pytest

from tensorpot.cli.main import main
from tests.cli.conftest import stderr_lines


@pytest.fixture()
def start(tmp_path, five_frames):
    path = tmp_path / "start.xyz"
    ase.io.write(path, ase.io.read(five_frames, index=0))
    return path


def md_args(model_file, tmp_path, *extra):
    return ["md", "--model", str(model_file), "--trajectory", str(tmp_path / "md.xyz"), *extra]


def test_md_writes_trajectory_log_and_report(tmp_path, capsys, model_file, start):
    argv = md_args(model_file, tmp_path, "--structure", str(start), "--time", "0.002",
                   "--timestep", "0.25", "--traj-interval", "4", "--log-interval", "2")  # fmt: skip
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "VelocityVerlet (nve), 27 atoms, dt 0.25 fs: 8 of 8 steps" in out
    assert "energy drift:" in out and "temperature:" in out and "bonds:" in out
    for label, name in [("trajectory", "md.xyz"), ("log", "md.log.csv"),
                        ("report", "md.report.json")]:  # fmt: skip
        assert f"tensorpot: wrote {label} to {tmp_path / name}" in err
    report = json.loads((tmp_path / "md.report.json").read_text())
    assert report["steps_run"] == 8 and report["stopped"] == "completed"
    assert report["drift"]["samples"] == 5
    frames = ase.io.read(tmp_path / "md.xyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 4, 8]
    assert main(argv) == 2  # never overwritten
    assert stderr_lines(capsys) == [
        f"tensorpot: error: {tmp_path / 'md.xyz'}: exists; refusing to overwrite it"
    ]


def test_md_restart_appends_in_place(tmp_path, capsys, model_file, start):
    first = md_args(model_file, tmp_path, "--structure", str(start), "--steps", "3",
                    "--ensemble", "nvt", "--traj-interval", "2")  # fmt: skip
    assert main(first) == 0
    more = ["md", "--model", str(model_file), "--restart", str(tmp_path / "md.xyz"),
            "--steps", "2", "--ensemble", "nvt", "--traj-interval", "2"]  # fmt: skip
    assert main(more) == 2  # appending must be asked for
    assert "exists; refusing to overwrite it" in capsys.readouterr().err
    assert main([*more, "--append"]) == 0
    frames = ase.io.read(tmp_path / "md.xyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 2, 3, 5]
    log = (tmp_path / "md.log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and [line.split(",")[0] for line in log[1:]] == [
        "0", "3", "5"
    ]  # fmt: skip
    report = json.loads((tmp_path / "md.report.json").read_text())
    assert report["continued_at"] == pytest.approx(0.0015) and report["steps_run"] == 2
    assert report["start_time"] == 0.0  # the report covers the whole run


def test_md_bad_input_is_one_line_naming_the_file(tmp_path, capsys, model_file, start):
    missing = tmp_path / "missing.xyz"
    not_a_model = tmp_path / "notes.model"
    not_a_model.write_text("these are notes\n")
    cases = [
        (md_args(model_file, tmp_path, "--structure", str(missing), "--steps", "1"),
         f"{missing}: no such structure file"),
        (md_args(not_a_model, tmp_path, "--structure", str(start), "--steps", "1"),
         f"{not_a_model}: refused, not a plain-data tensorpot model file"),
        (md_args(model_file, tmp_path, "--structure", str(start), "--steps", "1",
                 "--ensemble", "npt"),
         f"{start}: NPT needs a cell periodic in all three directions"),
        (md_args(model_file, tmp_path, "--structure", str(start), "--steps", "1", "--rdf"),
         f"{start}: an RDF needs a cell periodic in all three directions"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 2
        lines = stderr_lines(capsys)
        assert len(lines) == 1 and lines[0].startswith(f"tensorpot: error: {message}"), lines
    assert not (tmp_path / "md.xyz").exists()


def test_md_needs_a_start_and_a_length(capsys, model_file):
    assert main(["md", "--model", str(model_file), "--steps", "3"]) == 2
    assert "one of the arguments --structure --restart is required" in capsys.readouterr().err


def test_sigint_stops_the_command_with_its_files_whole(tmp_path, model_file, start):
    """A run of a million steps, interrupted once its trajectory has frames: exit 130, a
    readable trajectory and a report of what ran."""
    trajectory = tmp_path / "md.xyz"
    argv = [sys.executable, "-m", "tensorpot", *md_args(model_file, tmp_path),
            "--structure", str(start), "--steps", "1000000", "--traj-interval", "1"]  # fmt: skip
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if trajectory.exists() and trajectory.read_text().count("Properties=") >= 3:
            break
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    assert "interrupted (SIGINT)" in err
    report = json.loads((tmp_path / "md.report.json").read_text())
    frames = ase.io.read(trajectory, index=":")
    assert report["stopped"] == "SIGINT" and 2 <= report["steps_run"] < 1000000
    assert frames[-1].info["step"] == report["steps_run"]


def test_md_in_lammps_continues_a_run_as_one_run(tmp_path, capsys, model_file, start):
    """``--engine lammps``: 8 steps, then ``--restart --append`` 4 more, give the frames of
    one 12-step run (to the 1e-8 Å of the files); other ensembles are refused in one line."""
    from tensorpot.dynamics.lammps import lammps_unavailable

    why = lammps_unavailable()
    if why is not None:
        pytest.skip(f"LAMMPS cannot start: {why}")
    common = ["--engine", "lammps", "--traj-interval", "4", "--log-interval", "2"]
    one = ["md", "--model", str(model_file), "--trajectory", str(tmp_path / "one.xyz"), *common]
    assert main([*one, "--structure", str(start), "--steps", "12"]) == 0
    assert "LammpsVerlet (nve), 27 atoms, dt 0.5 fs: 12 of 12 steps" in capsys.readouterr().out
    argv = md_args(model_file, tmp_path, *common)
    assert main([*argv, "--structure", str(start), "--steps", "8"]) == 0
    assert main([*argv, "--restart", str(tmp_path / "md.xyz"), "--append", "--steps", "4"]) == 0
    whole = ase.io.read(tmp_path / "one.xyz", index=":")
    pieces = ase.io.read(tmp_path / "md.xyz", index=":")
    assert [f.info["step"] for f in pieces] == [f.info["step"] for f in whole] == [0, 4, 8, 12]
    for a, b in zip(whole, pieces):
        assert abs(a.positions - b.positions).max() < 1e-6
    capsys.readouterr()
    nvt = md_args(model_file, tmp_path / "nvt", "--structure", str(start), "--steps", "2",
                  "--engine", "lammps", "--ensemble", "nvt")  # fmt: skip
    assert main(nvt) == 2
    assert stderr_lines(capsys) == [
        f"tensorpot: error: {start}: LAMMPS runs NVE (fix nve) only, not nvt"
    ]
