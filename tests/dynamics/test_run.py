"""run_md with a tiny model: energy conservation, thermostat, signals, restart, refusals."""

from __future__ import annotations

import json
import os
import signal

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms, units

from tensorpot.dynamics import MDFiles, MDSettings, RDFSettings, run_md
from tensorpot.errors import ConfigError, DataError
from tensorpot.evaluation.evaluate import OutputExistsError


def test_nve_conserves_energy_while_kinetic_and_potential_trade(tmp_path, model, molecule_file):
    kinetic = []
    settings = MDSettings(steps=40, timestep=0.1, temperature=300.0, log_interval=2)
    report = run_md(model, settings, MDFiles.beside(tmp_path / "nve.xyz"),
                    structure=molecule_file,
                    observer=lambda s: kinetic.append(s.kinetic_energy))  # fmt: skip
    assert report.integrator == "VelocityVerlet" and report.stopped == "completed"
    assert report.steps_run == 40 and report.end_time == pytest.approx(0.004)
    exchanged = (max(kinetic) - min(kinetic)) / report.num_atoms  # eV/atom moved between terms
    assert exchanged > 1e-3
    assert report.drift.max_deviation < 0.01 * exchanged
    log = np.genfromtxt(tmp_path / "nve.log.csv", delimiter=",", names=True)
    assert len(log) == 21 and log["step"][-1] == 40
    total = log["total_energy_eV"]
    assert np.abs(total - total[0]).max() / report.num_atoms == pytest.approx(
        report.drift.max_deviation, rel=1e-6, abs=1e-9
    )
    saved = json.loads((tmp_path / "nve.report.json").read_text())
    assert saved["drift"]["max_deviation"] == pytest.approx(report.drift.max_deviation)
    frames = ase.io.read(tmp_path / "nve.xyz", index=":")
    assert [f.info["step"] for f in frames] == [0, 10, 20, 30, 40]
    assert frames[-1].get_potential_energy() == pytest.approx(log["potential_energy_eV"][-1])
    assert frames[-1].get_forces().shape == (27, 3)


def write_gas(path):
    """27 carbon atoms on a grid 5 Å apart in a periodic 15 Å box."""
    grid = np.stack(np.meshgrid(*[np.arange(3) * 5.0 + 2.5] * 3), axis=-1).reshape(-1, 3)
    ase.io.write(path, Atoms("C27", positions=grid, cell=[15.0] * 3, pbc=True))
    return path


def test_langevin_heats_a_gas_to_the_target_temperature(tmp_path, model):
    """27 carbon atoms 5 Å apart (beyond most of the 4 Å cutoff), at rest: only the thermostat
    heats them; with 0.2/fs the kinetic energy relaxes in 2.5 fs, so the mean from 6 fs on is
    the target (a friction off by ASE's time unit, 10x slower, would give about 0.7 of it)."""
    gas = write_gas(tmp_path / "gas.xyz")
    settings = MDSettings(steps=120, ensemble="nvt", timestep=0.5, temperature=500.0,
                          friction=0.2, velocities="zero", seed=7, log_interval=1,
                          trajectory_interval=120)  # fmt: skip
    report = run_md(model, settings, MDFiles.beside(tmp_path / "nvt.xyz"), structure=gas)
    assert report.integrator == "Langevin" and report.drift is None
    assert report.temperature.start == pytest.approx(0.006)
    assert report.temperature.mean == pytest.approx(500.0, rel=0.2)


def test_nose_hoover_and_npt_refused_without_a_cell(tmp_path, model, molecule_file):
    nh = MDSettings(steps=4, ensemble="nvt", thermostat="nose-hoover", temperature=300.0)
    report = run_md(model, nh, MDFiles.beside(tmp_path / "nh.xyz"), structure=molecule_file,
                    dtype="float32")  # fmt: skip
    assert report.integrator == "NoseHooverChainNVT" and report.steps_run == 4
    assert model.dtype == torch.float64  # the caller's model is not cast
    npt = MDSettings(steps=4, ensemble="npt")
    with pytest.raises(ConfigError, match=rf"{molecule_file}: NPT needs a cell periodic"):
        run_md(model, npt, MDFiles.beside(tmp_path / "npt.xyz"), structure=molecule_file)
    assert not (tmp_path / "npt.xyz").exists()


def test_npt_of_a_periodic_cell_with_its_rdf(tmp_path, model):
    gas = write_gas(tmp_path / "gas.xyz")
    settings = MDSettings(steps=4, ensemble="npt", timestep=0.5, pressure=1e4, log_interval=1)
    rdf = RDFSettings(r_max=5.0, bins=10, window=0.001, threshold=0.5)
    files = MDFiles.beside(tmp_path / "npt.xyz")
    report = run_md(model, settings, files, structure=gas, reference=gas, rdf=rdf)
    assert report.integrator in ("IsotropicMTKNPT", "NPTBerendsen") and report.steps_run == 4
    volume = np.genfromtxt(files.log, delimiter=",", names=True)["volume_A3"]
    assert volume[0] == pytest.approx(15.0**3) and np.isfinite(volume).all()
    assert set(report.rdf.rdf) == {"all", "C-C"} and report.rdf.rdf["C-C"].shape == (10,)
    assert len(report.rdf.window_errors) == 2  # windows of 1 fs over 2 fs of samples
    assert report.rdf.window_errors[0][1] < 0.5 and report.rdf.collapse_time is None


def stop_at(step: int, signum: int):
    def observer(sample):
        if sample.step == step:
            os.kill(os.getpid(), signum)

    return observer


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_cleanly_and_a_restart_continues(tmp_path, model, molecule_file, signum):
    """Stopped by a signal at step 4 of 12, then continued in place: the same trajectory as
    12 steps without a stop (NVE is deterministic; the file keeps 1e-8 of positions)."""
    settings = MDSettings(steps=12, timestep=0.25, trajectory_interval=3, log_interval=2)
    files = MDFiles.beside(tmp_path / "run.xyz")
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    report = run_md(model, settings, files, structure=molecule_file, observer=stop_at(4, signum))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert report.stopped == signal.Signals(signum).name and report.steps_run == 4
    assert json.loads(files.report.read_text())["steps_run"] == 4
    frames = ase.io.read(files.trajectory, index=":")
    assert [f.info["step"] for f in frames] == [0, 3, 4]  # the last state written too
    last_velocities = frames[-1].arrays["velocities"]

    first = []
    rest = MDSettings(steps=8, timestep=0.25, trajectory_interval=3, log_interval=2)
    again = run_md(model, rest, files, restart=files.trajectory, append=True,
                   observer=lambda s: first.append(s.atoms.get_velocities() * units.fs)
                   if not first else None)  # fmt: skip
    assert again.continued_at == pytest.approx(0.001) and again.end_time == pytest.approx(0.003)
    assert again.start_time == 0.0  # the report covers the whole trajectory
    np.testing.assert_allclose(first[0], last_velocities, atol=1e-12)
    frames = ase.io.read(files.trajectory, index=":")
    assert [f.info["step"] for f in frames] == [0, 3, 4, 7, 10, 12]
    assert [f.info["time"] for f in frames] == pytest.approx([0, 0.75, 1.0, 1.75, 2.5, 3.0])
    log = np.genfromtxt(files.log, delimiter=",", names=True)
    assert log["step"].tolist() == [0, 2, 4, 6, 8, 10, 12]

    straight = run_md(model, settings, MDFiles.beside(tmp_path / "straight.xyz"),
                      structure=molecule_file)  # fmt: skip
    assert straight.steps_run == 12
    end = ase.io.read(tmp_path / "straight.xyz", index=-1)
    np.testing.assert_allclose(frames[-1].positions, end.positions, atol=1e-6)
    # the continued run's report is the uninterrupted run's: same samples, same verdicts
    # (to the 1e-3 that restarting from positions written to 1e-8 Å leaves of a tiny drift)
    assert again.drift.samples == straight.drift.samples == 7
    assert again.drift.slope == pytest.approx(straight.drift.slope, rel=1e-2)
    assert again.drift.max_deviation == pytest.approx(straight.drift.max_deviation, rel=1e-2)
    assert again.temperature.mean == pytest.approx(straight.temperature.mean, rel=1e-6)
    assert again.bonds.max_deviation == pytest.approx(straight.bonds.max_deviation, abs=1e-6)


def test_an_appended_run_without_its_log_reports_from_the_frames(tmp_path, model, molecule_file):
    """The log deleted before a continuation: the earlier part's samples come from the
    trajectory's frames (steps 0 and 3 of a run stopped at step 4)."""
    settings = MDSettings(steps=4, timestep=0.25, trajectory_interval=3, log_interval=2)
    files = MDFiles.beside(tmp_path / "run.xyz")
    first = run_md(model, settings, files, structure=molecule_file)
    assert first.drift.samples == 3  # steps 0, 2, 4
    files.log.unlink()
    again = run_md(model, settings, files, restart=files.trajectory, append=True)
    assert again.start_time == 0.0 and again.continued_at == pytest.approx(0.001)
    assert again.drift.samples == 2 + 3  # frames at steps 0, 3; samples at 4, 6, 8


def test_existing_outputs_are_never_overwritten(tmp_path, model, molecule_file):
    files = MDFiles.beside(tmp_path / "md.xyz")
    settings = MDSettings(steps=2, trajectory_interval=1)
    run_md(model, settings, files, structure=molecule_file)
    kept = files.trajectory.read_bytes()
    with pytest.raises(OutputExistsError, match=rf"{files.trajectory}: exists; refusing"):
        run_md(model, settings, files, structure=molecule_file)
    with pytest.raises(ConfigError, match="appending continues the trajectory"):
        run_md(model, settings, files, structure=molecule_file, append=True)
    other = MDFiles.beside(tmp_path / "other.xyz", log=str(files.log))
    with pytest.raises(OutputExistsError, match=rf"{files.log}: exists"):
        run_md(model, settings, other, restart=files.trajectory)
    assert files.trajectory.read_bytes() == kept and not other.trajectory.exists()


def test_bad_inputs_name_their_file(tmp_path, model, molecule_file):
    settings, files = MDSettings(steps=1), MDFiles.beside(tmp_path / "md.xyz")
    with pytest.raises(DataError, match=r"nothing\.xyz: no such structure file"):
        run_md(model, settings, files, structure=tmp_path / "nothing.xyz")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("3\nnot a comment\nC 0 0\n")
    with pytest.raises(DataError, match=r"garbage\.xyz, frame 0: file ends inside the frame"):
        run_md(model, settings, files, structure=garbage)
    with pytest.raises(DataError, match=rf"{molecule_file}: .*no velocities"):
        run_md(model, settings, files, restart=molecule_file)
    chlorine = tmp_path / "cl.xyz"
    chlorine.write_text("2\n\nCl 0 0 0\nH 0 0 1.3\n")
    with pytest.raises(DataError, match=r"cl\.xyz: the model does not know element\(s\) Cl"):
        run_md(model, settings, files, structure=chlorine)
    assert not files.trajectory.exists()
