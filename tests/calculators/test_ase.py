"""The ASE calculator: derivatives, symmetry and bookkeeping, through a smooth pair potential."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.io import read
from ase.neighborlist import neighbor_list as ase_neighbor_list
from ase.stress import voigt_6_to_full_3x3_stress

from tensorpot.calculators import TensorPotCalculator
from tensorpot.errors import DataError
from tests.conftest import random_rotation
from tests.pair_potential import PairPotential, pair_energy

THREE_BPA = Path(__file__).parents[2] / "data" / "3bpa" / "train_300K.xyz"  # bundled
E0S = (-13.6, -1030.0, -1480.0, -2040.0)  # H, C, N, O


def model() -> PairPotential:
    return PairPotential(atomic_numbers=(1, 6, 7, 8), r_max=4.0, seed=3, E0s=E0S)


def molecule() -> Atoms:
    """A 3BPA frame when the shared data is there, else a random compact molecule."""
    if THREE_BPA.exists():
        atoms = read(THREE_BPA, index=0)
        atoms.calc = None
        return atoms
    rng = np.random.default_rng(0)
    positions = [np.zeros(3)]
    while len(positions) < 12:
        p = positions[rng.integers(len(positions))] + rng.normal(size=3)
        if np.linalg.norm(np.asarray(positions) - p, axis=1).min() > 0.9:
            positions.append(p)
    return Atoms("HCNO" * 3, positions=positions)


def crystal(small: bool, seed: int = 0) -> Atoms:
    """Triclinic periodic cell; the small one is shorter than the 4 Å cutoff."""
    rng = np.random.default_rng(seed)
    lengths = np.array([2.6, 2.9, 3.1]) if small else np.array([5.5, 6.0, 6.5])
    cell = np.diag(lengths) + rng.uniform(-0.3, 0.3, (3, 3))
    n = 3 if small else 10
    atoms = Atoms("CHONCHONCH"[:n], scaled_positions=rng.random((n, 3)), cell=cell, pbc=True)
    # Keep atoms apart so that no distance is tiny.
    while np.min(atoms.get_all_distances(mic=True) + 9 * np.eye(n)) < 1.0:
        atoms.set_scaled_positions(rng.random((n, 3)))
    return atoms


def attach(atoms: Atoms, potential: PairPotential | None = None) -> Atoms:
    atoms = atoms.copy()
    atoms.calc = TensorPotCalculator(model=potential if potential is not None else model())
    return atoms


STRUCTURES = {
    "molecule": molecule,
    "small_cell": lambda: crystal(True),
    "cell": lambda: crystal(False, 1),
    "slab": lambda: Atoms(crystal(True, 2), pbc=(True, True, False)),
}


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_energy_is_the_pair_sum(name):
    """Energy = sum of phi over ASE's neighbour list + E0s, for molecules and small cells."""
    atoms = attach(STRUCTURES[name]())
    pot = atoms.calc.model
    i, j, d = ase_neighbor_list("ijd", atoms, pot.r_max)
    species = pot.species_of(torch.as_tensor(atoms.numbers))
    depth = pot.pair_depths(species[i], species[j])
    phi = pair_energy(torch.as_tensor(d), depth, pot.r_max)
    expected = 0.5 * float(phi.sum()) + float(pot.E0s[species].sum())
    assert len(i) > 0
    assert atoms.get_potential_energy() == pytest.approx(expected, rel=1e-12, abs=1e-10)


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_forces_are_minus_the_energy_gradient(name):
    atoms = attach(STRUCTURES[name]())
    forces = atoms.get_forces()
    numerical = calculate_numerical_forces(atoms, eps=1e-4)
    assert np.abs(forces).max() > 1e-3
    np.testing.assert_allclose(forces, numerical, atol=1e-6)


@pytest.mark.parametrize("small", [True, False])
def test_stress_is_the_strain_derivative(small):
    atoms = attach(crystal(small, 4))
    stress = atoms.get_stress()
    numerical = calculate_numerical_stress(atoms, eps=1e-5)
    assert stress.shape == (6,)
    assert np.abs(stress).max() > 1e-4
    np.testing.assert_allclose(stress, numerical, atol=1e-8)


def test_molecule_has_no_stress():
    atoms = attach(molecule())
    atoms.get_potential_energy()
    assert "stress" not in atoms.calc.results
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()


@pytest.mark.parametrize("name", ["molecule", "small_cell"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_rotation_and_translation(name, sign):
    """E invariant under rotations, reflections and translations; forces and stress co-rotate."""
    atoms = attach(STRUCTURES[name]())
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    rot = sign * random_rotation(7).numpy()
    moved = atoms.copy()
    moved.positions = atoms.positions @ rot.T + np.array([0.7, -1.9, 3.3])
    moved.cell = atoms.cell.array @ rot.T
    moved.wrap()
    moved.calc = TensorPotCalculator(model=atoms.calc.model)
    assert moved.get_potential_energy() == pytest.approx(energy, rel=1e-12)
    np.testing.assert_allclose(moved.get_forces(), forces @ rot.T, atol=1e-10)
    if atoms.pbc.any():
        stress = voigt_6_to_full_3x3_stress(atoms.get_stress())
        moved_stress = voigt_6_to_full_3x3_stress(moved.get_stress())
        np.testing.assert_allclose(moved_stress, rot @ stress @ rot.T, atol=1e-10)


def test_elements_matter():
    atoms = attach(crystal(True))
    energy = atoms.get_potential_energy()
    swapped = atoms.copy()
    swapped.numbers = atoms.numbers[[1, 0, 2]]
    swapped.calc = TensorPotCalculator(model=atoms.calc.model)
    shift = sum(E0S[(1, 6, 7, 8).index(z)] for z in swapped.numbers) - sum(
        E0S[(1, 6, 7, 8).index(z)] for z in atoms.numbers
    )
    assert abs(swapped.get_potential_energy() - shift - energy) > 1e-6


def test_unknown_element_is_a_clear_error():
    atoms = crystal(True)
    atoms.symbols[1] = "Fe"
    atoms = attach(atoms)
    with pytest.raises(DataError, match=r"Fe.*knows H, C, N, O"):
        atoms.get_potential_energy()


def test_results_bookkeeping():
    atoms = attach(crystal(False, 5))
    energy = atoms.get_potential_energy()
    results = atoms.calc.results
    assert results["free_energy"] == energy
    assert results["energies"].shape == (len(atoms),)
    assert results["energies"].sum() == pytest.approx(energy, rel=1e-12)
    for key in ("energies", "forces", "stress"):
        assert isinstance(results[key], np.ndarray) and results[key].dtype == np.float64
    assert results["forces"].shape == (len(atoms), 3)
    # Newton's third law for a pair potential: the net force vanishes.
    np.testing.assert_allclose(results["forces"].sum(axis=0), 0.0, atol=1e-10)
    # Moving an atom invalidates the cache.
    atoms.positions[0] += [0.05, -0.02, 0.03]
    assert atoms.get_potential_energy() != energy


def test_model_is_put_in_eval_mode_and_works_under_no_grad():
    pot = model().train()
    atoms = attach(molecule(), pot)
    assert not atoms.calc.model.training
    assert not any(p.requires_grad for p in atoms.calc.model.parameters())
    # the caller's model is copied, not changed: it can go on training
    assert pot.training and all(p.requires_grad for p in pot.parameters())
    with torch.no_grad():
        forces = atoms.get_forces()
    assert np.isfinite(forces).all() and np.abs(forces).max() > 1e-3


def test_float32_model_agrees_with_float64():
    atoms = attach(crystal(False, 6))
    atoms32 = attach(atoms, model().to(torch.float32))
    assert atoms32.calc.model.dtype == torch.float32
    e64, e32 = atoms.get_potential_energy(), atoms32.get_potential_energy()
    assert abs(e32 - e64) < 1e-6 * abs(e64) + 1e-3
    np.testing.assert_allclose(atoms32.get_forces(), atoms.get_forces(), atol=1e-3)
    assert atoms32.get_forces().dtype == np.float64


def test_model_path_loads_lazily(monkeypatch, tmp_path):
    pot, loaded = model(), []
    fake = types.ModuleType("tensorpot.models.io")

    def load_model(path):
        loaded.append(path)
        return pot

    fake.load_model = load_model
    monkeypatch.setitem(sys.modules, "tensorpot.models.io", fake)
    path = str(tmp_path / "model.pt")
    calc = TensorPotCalculator(model_path=path)
    assert loaded == [path] and calc.model is pot
    with pytest.raises(ValueError, match="exactly one"):
        TensorPotCalculator()
    with pytest.raises(ValueError, match="exactly one"):
        TensorPotCalculator(model=pot, model_path=path)


def test_atoms_at_the_same_position_are_refused_not_nan():
    atoms = attach(molecule())
    atoms.positions[3] = atoms.positions[5]
    with pytest.raises(DataError, match="atoms 3 and 5 are at the same position"):
        atoms.get_potential_energy()


def test_nan_position_is_refused():
    atoms = attach(molecule())
    atoms.positions[2, 1] = np.nan
    with pytest.raises(DataError, match="positions contains nan"):
        atoms.get_forces()


def test_device_this_machine_lacks_is_one_clear_error():
    from tensorpot.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        TensorPotCalculator(model=model(), device="cuda")


def test_structures_without_neighbours_with_a_real_model():
    """An isolated atom and a dimer stretched past r_max: the bare atoms' energies, no force."""
    from tests.evaluation.tiny import tiny_model

    calc = TensorPotCalculator(model=tiny_model())
    energies = {}
    for symbols, positions in [
        ("C", [[0, 0, 0]]),
        ("O", [[0, 0, 0]]),
        ("CO", [[0, 0, 0], [0, 0, 6]]),
    ]:
        atoms = Atoms(symbols, positions=positions)
        atoms.calc = calc
        energies[symbols] = atoms.get_potential_energy()
        assert np.all(atoms.get_forces() == 0.0)
    assert energies["CO"] == pytest.approx(energies["C"] + energies["O"], abs=1e-9)


def test_tensorial_outputs_reach_ase():
    """A model with dipole and polarizability outputs: ASE's dipole, and the polarizability
    in ``results``; a model without an energy gives no forces."""
    from tests.evaluation.tiny import tiny_model

    outputs = ["energy", "dipole", "polarizability"]
    atoms = molecule()
    atoms.calc = TensorPotCalculator(model=tiny_model(max_L=2, outputs=outputs))
    assert atoms.get_dipole_moment().shape == (3,)
    alpha = atoms.calc.results["polarizability"]
    assert alpha.shape == (3, 3) and np.allclose(alpha, alpha.T)
    assert np.isfinite(atoms.get_potential_energy())
    atoms.calc = TensorPotCalculator(model=tiny_model(max_L=1, outputs=["dipole"]))
    assert np.isfinite(atoms.get_dipole_moment()).all()
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_forces()
