"""Start structures read from the data sets' npz files as well as from extended XYZ."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest

from tensorpot.dynamics import MDFiles, MDSettings, run_md
from tensorpot.dynamics.trajectory import read_frames, read_structure
from tensorpot.errors import DataError


@pytest.fixture
def rmd17_npz(tmp_path, molecule_file):
    """Three displaced copies of the 3BPA frame in rMD17's layout (kcal/mol)."""
    atoms = ase.io.read(molecule_file)
    rng = np.random.default_rng(0)
    coords = atoms.positions + 0.01 * rng.standard_normal((3, len(atoms), 3))
    path = tmp_path / "three.npz"
    np.savez(
        path, nuclear_charges=atoms.numbers.astype(np.uint8), coords=coords,
        energies=np.zeros(3), forces=np.zeros((3, len(atoms), 3)),
    )  # fmt: skip
    return path, atoms.numbers, coords


def test_an_npz_frame_is_a_start_structure(rmd17_npz):
    path, numbers, coords = rmd17_npz
    assert len(read_frames(path)) == 3
    start = read_structure(path, frame=2)
    np.testing.assert_array_equal(start.atoms.numbers, numbers)
    np.testing.assert_allclose(start.atoms.positions, coords[2], rtol=0, atol=1e-12)
    assert not start.atoms.pbc.any() and not start.has_velocities
    with pytest.raises(DataError, match="frame 3 out of range: the file has 3") as info:
        read_structure(path, frame=3)
    assert str(path) in str(info.value)


def test_md_runs_from_an_npz_frame(tmp_path, model, rmd17_npz):
    path, numbers, coords = rmd17_npz
    settings = MDSettings(steps=4, timestep=0.1, temperature=300.0, log_interval=2)
    report = run_md(model, settings, MDFiles.beside(tmp_path / "md.xyz"), structure=path)
    assert report.steps_run == 4 and report.num_atoms == len(numbers)
    first = ase.io.read(tmp_path / "md.xyz", index=0)
    np.testing.assert_allclose(first.positions, coords[0], rtol=0, atol=1e-7)


def test_a_bad_npz_names_its_file(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(DataError) as info:
        read_structure(path)
    assert str(path) in str(info.value)
