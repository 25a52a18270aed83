"""Training with structures that have no neighbour within r_max (isolated atoms, far dimers)."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import read, write

from tensorpot.training import train
from tests.training.conftest import DATA, tiny_run


def test_isolated_atoms_in_the_training_and_the_test_files(tmp_path, frames_file, e0s):
    """A stretched dimer trains; the bundled isolated atoms as a test file get their errors."""
    frames = read(frames_file, ":")
    dimer = Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 7.0]])  # r_max is 4 Å
    dimer.calc = SinglePointCalculator(dimer, energy=e0s[6] + e0s[8], forces=np.zeros((2, 3)))
    train_file = tmp_path / "train.xyz"
    write(train_file, [*frames, dimer], format="extxyz")
    config = tiny_run(
        train_file, tmp_path / "run", e0s, max_num_epochs=2, valid_fraction=0.3,
        test_files=[str(DATA / "iso_atoms.xyz")],
    )  # fmt: skip
    result = train(config)
    iso = result.error_tables["iso_atoms"]
    assert np.isfinite(iso["energy_rmse"]) and iso["forces_rmse"] == 0.0
    assert "iso_atoms" in result.errors_path.read_text(encoding="utf-8")
