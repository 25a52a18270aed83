"""NVE in LAMMPS through ``fix external``: LAMMPS's energy, forces and virial equal the ASE
calculator's on LAMMPS's positions at every step, and LAMMPS's velocity Verlet follows ASE's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import units
from ase.build import bulk

import tensorpot
from tensorpot.calculators import TensorPotCalculator
from tensorpot.dynamics import MDFiles, MDSettings, run_md
from tensorpot.dynamics.lammps import LammpsVerlet, lammps_unavailable
from tensorpot.dynamics.trajectory import read_structure
from tensorpot.errors import ConfigError, DataError

_WHY = lammps_unavailable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"LAMMPS cannot start: {_WHY}")


@pytest.fixture(scope="module")
def crystal_file(tmp_path_factory):
    """An 8-atom diamond cell on the fcc primitive vectors (not lower triangular, so LAMMPS
    gets it rotated), atoms displaced, some outside the cell."""
    atoms = bulk("C", "diamond", a=3.57) * (2, 2, 1)
    atoms.positions += 0.1 * np.random.default_rng(1).standard_normal(atoms.positions.shape)
    atoms.positions[0] -= atoms.cell[0] * 0.2  # outside: LAMMPS wraps it, images keep it
    path = tmp_path_factory.mktemp("lammps") / "diamond.xyz"
    ase.io.write(path, atoms)
    return path


@pytest.fixture(params=["molecule", "crystal"])
def structure(request, molecule_file, crystal_file):
    return molecule_file if request.param == "molecule" else crystal_file


def _start(path, model):
    atoms = read_structure(path).atoms
    rng = np.random.default_rng(3)  # about 300 K
    scale = np.sqrt(atoms.get_masses() * units.kB * 300.0)[:, None]
    atoms.set_momenta(rng.standard_normal((len(atoms), 3)) * scale)
    atoms.calc = TensorPotCalculator(model=model)
    return atoms


def _lammps_state(verlet: LammpsVerlet) -> tuple[np.ndarray, np.ndarray]:
    """Positions and forces as LAMMPS holds them (its frame, ordered by atom ID)."""
    lmp, n = verlet.lmp, len(verlet.atoms)
    x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(n, 3)
    f = np.ctypeslib.as_array(lmp.gather_atoms("f", 1, 3)).reshape(n, 3)
    return x, f


def test_lammps_energy_forces_and_virial_are_the_calculators_at_every_step(model, structure):
    atoms = _start(structure, model)
    verlet = LammpsVerlet(atoms, MDSettings(steps=12, log_interval=1, trajectory_interval=1))
    verlet.lmp.command("compute virial all pressure NULL virial")  # P = W / V, bar
    reference = TensorPotCalculator(model=model)
    mirror = verlet._mirror.copy()  # LAMMPS's cell (rotated) and periodicity
    steps, first = [], None
    try:
        for _ in verlet.irun(12):
            x, f = _lammps_state(verlet)
            mirror.positions = x
            mirror.calc = reference
            assert abs(verlet.thermo("pe") - mirror.get_potential_energy()) < 1e-8
            assert np.abs(f - mirror.get_forces()).max() < 1e-8
            if mirror.pbc.any():  # W = -V sigma, so LAMMPS's virial pressure is -sigma
                lammps = np.asarray(verlet.lmp.numpy.extract_compute("virial", 0, 1))
                sigma = mirror.get_stress()[[0, 1, 2, 5, 4, 3]]
                np.testing.assert_allclose(lammps * units.bar, -sigma, rtol=1e-6, atol=1e-12)
            steps.append(verlet.nsteps)
            first = x if first is None else first
    finally:
        verlet.close()
    assert steps == list(range(13))
    assert np.abs(x - first).max() > 1e-3  # the atoms moved


def test_lammps_velocity_verlet_follows_ase(tmp_path, model, structure):
    """The same start and time step: the two trajectories agree to the precision of the
    extxyz files (1e-8 Å; LAMMPS's and ASE's unit constants differ in the 7th digit)."""
    frames = {}
    for engine in ("ase", "lammps"):
        settings = MDSettings(steps=30, timestep=0.5, seed=5, trajectory_interval=5)
        files = MDFiles.beside(tmp_path / f"{engine}.xyz")
        report = run_md(model, settings, files, structure=structure, engine=engine)
        assert report.steps_run == 30 and report.rank == 0
        frames[engine] = ase.io.read(files.trajectory, index=":")
    assert len(frames["ase"]) == len(frames["lammps"]) == 7
    moved = np.abs(frames["ase"][-1].positions - frames["ase"][0].positions).max()
    assert moved > 1e-2
    for a, b in zip(frames["ase"], frames["lammps"]):
        assert a.info["step"] == b.info["step"]
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-6)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), rtol=0, atol=1e-6)
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-6)
        assert b.get_kinetic_energy() == pytest.approx(a.get_kinetic_energy(), rel=1e-6)


def test_lammps_refuses_other_ensembles_and_engines(tmp_path, model, molecule_file):
    files = MDFiles.beside(tmp_path / "x.xyz")
    with pytest.raises(ConfigError, match="NVE"):
        run_md(model, MDSettings(steps=2, ensemble="nvt"), files, structure=molecule_file,
               engine="lammps")  # fmt: skip
    with pytest.raises(ConfigError, match="engine"):
        run_md(model, MDSettings(steps=2), files, structure=molecule_file, engine="gromacs")
    assert not files.trajectory.exists()


def test_an_error_in_the_model_stops_the_lammps_run_and_is_raised(model, molecule_file):
    """The callback's exception cannot cross LAMMPS; the run stops and it is raised after."""
    atoms = _start(molecule_file, model)
    verlet = LammpsVerlet(atoms, MDSettings(steps=50, log_interval=50, trajectory_interval=50))
    calls = []
    evaluate = verlet.calc.calculate

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:
            raise DataError("two atoms at the same position")
        return evaluate(*args, **kwargs)

    verlet.calc.calculate = failing
    try:
        with pytest.raises(DataError, match="same position"):
            for _ in verlet.irun(50):
                pass
        assert len(calls) == 4  # stopped at the first failure, not 46 steps later
    finally:
        verlet.close()


def _mpirun() -> str | None:
    return shutil.which("mpirun") or shutil.which("mpirun", path=str(Path(sys.executable).parent))


@pytest.mark.slow
@pytest.mark.skipif(_mpirun() is None, reason="no mpirun (pip install mpich)")
def test_two_mpi_processes_run_the_single_process_trajectory(tmp_path, model, crystal_file):
    """``mpirun -np 2``: each process owns part of the cell; the trajectory is the one
    process's (every process evaluates all atoms, gathered)."""
    model_file = tensorpot.save_model(model, tmp_path / "tiny.model")
    env = {**os.environ, "PYTHONPATH": str(Path(tensorpot.__file__).parents[1])}
    args = ["-m", "tensorpot", "md", "--model", str(model_file), "--structure",
            str(crystal_file), "--steps", "20", "--engine", "lammps", "--log-interval", "5",
            "--traj-interval", "5"]  # fmt: skip
    for name, prefix in (("one", []), ("two", [_mpirun(), "-np", "2"])):
        done = subprocess.run([*prefix, sys.executable, *args, "--trajectory", f"{name}.xyz"],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
    assert done.stdout.count("LammpsVerlet") == 1  # rank 0 alone reports
    one = ase.io.read(tmp_path / "one.xyz", index=":")
    two = ase.io.read(tmp_path / "two.xyz", index=":")
    assert len(one) == len(two) == 5
    for a, b in zip(one, two):
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-8)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), rtol=0, atol=1e-8)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("two")) == [
        "two.log.csv", "two.report.json", "two.xyz"]  # fmt: skip


THERMO = """
import json, sys
import numpy as np
from ase.io import read
from tensorpot.calculators import TensorPotCalculator
from tensorpot.dynamics import MDSettings
from tensorpot.dynamics.lammps import LammpsVerlet
import tensorpot
atoms = read(sys.argv[2])
atoms.set_velocities(np.full((len(atoms), 3), 0.01))
atoms.calc = TensorPotCalculator(model_path=sys.argv[1])
verlet = LammpsVerlet(atoms, MDSettings(steps=6, log_interval=2, trajectory_interval=2))
out = {"pe": [], "press": [], "energy": [], "positions": None, "nprocs": verlet.nprocs}
for _ in verlet.irun(6):
    out["pe"].append(verlet.thermo("pe"))
    out["press"].append(verlet.thermo("press"))
    out["energy"].append(atoms.get_potential_energy())
out["positions"] = atoms.positions.tolist()
if verlet.rank == 0:
    print(json.dumps(out))
verlet.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(_mpirun() is None, reason="no mpirun (pip install mpich)")
def test_two_mpi_processes_give_lammps_the_whole_energy_and_pressure(tmp_path, model,
                                                                     crystal_file):  # fmt: skip
    """LAMMPS's ``pe`` and ``press`` with two processes are those of one process (a fix's
    global energy and virial are not summed over processes, so each sets the whole)."""
    model_file = tensorpot.save_model(model, tmp_path / "tiny.model")
    script = tmp_path / "thermo.py"
    script.write_text(THERMO)
    env = {**os.environ, "PYTHONPATH": str(Path(tensorpot.__file__).parents[1])}
    runs = {}
    for nprocs in (1, 2):
        prefix = [_mpirun(), "-np", "2"] if nprocs == 2 else []
        done = subprocess.run([*prefix, sys.executable, str(script), str(model_file),
                               str(crystal_file)], env=env, capture_output=True, text=True,
                              timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr
        runs[nprocs] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs[1]["nprocs"] == 1 and runs[2]["nprocs"] == 2
    np.testing.assert_allclose(runs[1]["pe"], runs[1]["energy"], rtol=0, atol=1e-8)
    for key in ("pe", "press", "positions"):
        np.testing.assert_allclose(runs[2][key], runs[1][key], rtol=1e-10, atol=1e-8)
