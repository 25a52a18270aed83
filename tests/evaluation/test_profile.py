"""Energy profiles: relative energies, their errors, coordinates, and the written files."""

from __future__ import annotations

import csv

import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

import tensorpot
from tensorpot.data.configuration import Configuration
from tensorpot.errors import ConfigError, DataError
from tensorpot.evaluation.evaluate import OutputExistsError, StructurePrediction, predict
from tensorpot.evaluation.profile import (
    energy_profile,
    evaluate_profile_file,
    profile_coordinates,
    profile_paths,
    relative_energies,
)
from tests.evaluation.tiny import TEST_300K, tiny_model

#: the torsion turned in the synthetic scan: C(pyridine)-O-CH2-C(phenyl) of the 3BPA frames
TORSION = (1, 5, 13, 14)
ANGLES = np.arange(0.0, 360.0, 60.0)


def water(energy: float | None, k: int) -> Configuration:
    positions = np.array([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.1 * k]])
    return Configuration(numbers=np.array([8, 1, 1]), positions=positions, energy=energy,
                         source=("scan.xyz", k))  # fmt: skip


def predicted(energies) -> list[StructurePrediction]:
    return [StructurePrediction(energy=float(e), forces=None) for e in energies]


def test_relative_energies_have_their_minimum_at_zero():
    rng = np.random.default_rng(0)
    for _ in range(20):
        energies = rng.normal(size=rng.integers(1, 30)) * 10 - 500
        rel = relative_energies(energies)
        assert rel.min() == 0.0 and (rel >= 0).all()
        assert rel.argmin() == energies.argmin()
        np.testing.assert_allclose(np.diff(rel), np.diff(energies), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="non-empty"):
        relative_energies([])


def test_profile_errors_vanish_for_the_reference_and_any_offset_of_it():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=8)
    configs = [water(e, k) for k, e in enumerate(reference)]
    for offset in (0.0, -1234.5, 3.25):
        profile = energy_profile(configs, predicted(reference + offset), np.arange(8.0))
        tolerance = 1e3 * 4 * np.spacing(1234.5)  # meV: rounding of the offset energies
        assert profile.errors["relative_energy_rmse"] <= tolerance
        assert profile.errors["relative_energy_mae"] <= tolerance
        np.testing.assert_allclose(profile.predicted, profile.reference, rtol=0, atol=1e-12)


def test_profile_errors_are_those_of_the_shifted_curves():
    rng = np.random.default_rng(2)
    reference, model = rng.normal(size=(2, 12))
    profile = energy_profile([water(e, k) for k, e in enumerate(reference)], predicted(model),
                             rng.uniform(-180, 180, 12), "dihedral")  # fmt: skip
    diff = (model - model.min()) - (reference - reference.min())
    errors = profile.errors
    assert errors["relative_energy_rmse"] == pytest.approx(1e3 * np.sqrt(np.mean(diff**2)))
    assert errors["relative_energy_mae"] == pytest.approx(1e3 * np.mean(np.abs(diff)))
    assert errors["relative_energy_mae"] <= errors["relative_energy_rmse"]
    assert profile.reference.min() == 0.0 and profile.predicted.min() == 0.0
    rows = profile.rows()
    assert [r[0] for r in rows] == list(range(12))
    assert [r[1] for r in rows] == list(profile.coordinates)  # file order, not sorted
    assert [r[4] for r in rows] == pytest.approx(1e3 * diff)
    text = profile.format()
    assert "dihedral" in text.splitlines()[0] and len(text.splitlines()) == 2 + 12 + 2
    assert f"RMSE {errors['relative_energy_rmse']:.2f} meV" in text


def test_profile_needs_a_reference_energy_in_every_frame():
    configs = [water(1.0, 0), water(None, 1), water(2.0, 2)]
    with pytest.raises(DataError, match="no reference energy") as info:
        energy_profile(configs, predicted([0.0, 1.0, 2.0]), [0.0, 1.0, 2.0])
    assert info.value.frame == 1 and "scan.xyz" in str(info.value)
    with pytest.raises(ValueError, match="3 configurations, 2 predictions"):
        energy_profile(configs, predicted([0.0, 1.0]), [0.0, 1.0, 2.0])


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """A synthetic torsion scan of a 3BPA frame labelled by the tiny model plus an offset:
    the model is the reference, up to a constant. Returns ``(model file, scan file)``."""
    folder = tmp_path_factory.mktemp("scan")
    model = tiny_model()
    atoms = ase.io.read(TEST_300K, index=0)
    frames = []
    for angle in ANGLES:
        frame = atoms.copy()
        frame.set_dihedral(*TORSION, angle, indices=_moving_side(atoms))
        frame.info = {"dihedral": float(angle)}
        frames.append(frame)
    configs = [Configuration(numbers=a.numbers, positions=a.positions) for a in frames]
    for frame, prediction in zip(frames, predict(model, configs)):
        frame.calc = SinglePointCalculator(frame, energy=prediction.energy - 50.0,
                                           forces=prediction.forces)  # fmt: skip
    path = folder / "scan.xyz"
    ase.io.write(path, frames, format="extxyz")
    return tensorpot.save_model(model, folder / "tiny.model"), path


def _moving_side(atoms) -> list[int]:
    """The atoms beyond the O-CH2 bond of 3BPA (the CH2 group and the phenyl ring)."""
    from ase.neighborlist import natural_cutoffs, neighbor_list

    i, j = neighbor_list("ij", atoms, natural_cutoffs(atoms, mult=1.2))
    side, todo = {TORSION[2]}, [TORSION[2]]
    while todo:
        atom = todo.pop()
        for other in j[i == atom]:
            if other != TORSION[1] and other not in side:
                side.add(int(other))
                todo.append(int(other))
    assert TORSION[1] not in side  # the bond is not in a ring
    return sorted(side)


def test_profile_coordinates_from_info_and_npz(tmp_path, scan):
    _, path = scan
    np.testing.assert_array_equal(profile_coordinates(path, "dihedral"), ANGLES)
    npz = tmp_path / "scan.npz"
    np.savez(npz, R=np.zeros((3, 2, 3)), E=np.zeros(3), F=np.zeros((3, 2, 3)), z=[1, 1],
             phi=np.array([10.0, 20.0, 30.0]))  # fmt: skip
    np.testing.assert_array_equal(profile_coordinates(npz, "phi"), [10.0, 20.0, 30.0])
    with pytest.raises(DataError, match="no profile key 'psi'"):
        profile_coordinates(npz, "psi")
    with pytest.raises(ConfigError, match="PNG"):
        profile_paths(tmp_path / "profile.csv")


@pytest.mark.parametrize(("value", "problem"), [(None, "no profile key"), ("'abc'", "not one")])
def test_frame_without_the_coordinate_is_named(tmp_path, scan, value, problem):
    _, path = scan
    frames = ase.io.read(path, index=":")
    del frames[2].info["dihedral"]
    if value is not None:
        frames[2].info["dihedral"] = value.strip("'")
    broken = tmp_path / "broken.xyz"
    ase.io.write(broken, frames, format="extxyz")
    with pytest.raises(DataError, match=problem) as info:
        profile_coordinates(broken, "dihedral")
    assert info.value.frame == 2 and "broken.xyz" in str(info.value)


def test_profile_of_a_model_against_itself(tmp_path, scan):
    pytest.importorskip("matplotlib")
    model_file, path = scan
    plot = tmp_path / "out" / "profile.png"
    table, predictions, profile = evaluate_profile_file(model_file, path, plot, "dihedral")
    # extxyz keeps positions to 1e-8 Å: energies move by ~|F| 1e-8 eV per atom, well below 1 µeV
    assert profile.errors["relative_energy_rmse"] == pytest.approx(0.0, abs=1e-3)
    assert table["relative_energy_rmse"] == profile.errors["relative_energy_rmse"]
    assert table["energy_mae"] == pytest.approx(50e3, rel=1e-9)  # the offset, in meV
    energies = np.array([p.energy for p in predictions])
    np.testing.assert_allclose(profile.predicted, energies - energies.min(), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(profile.coordinates, ANGLES)
    png, table_csv, table_md = profile_paths(plot)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(table_csv.open()))
    assert [float(r["dihedral"]) for r in rows] == list(ANGLES)
    assert [float(r["model_meV"]) for r in rows] == pytest.approx(1e3 * profile.predicted)
    assert "RMSE 0.00 meV" in table_md.read_text()
    with pytest.raises(OutputExistsError, match="profile.png"):
        evaluate_profile_file(model_file, path, plot, "dihedral")
    table_md.write_text("kept")
    png.unlink()
    table_csv.unlink()
    with pytest.raises(OutputExistsError, match="profile.md"):  # refused before writing any
        evaluate_profile_file(model_file, path, plot, "dihedral")
    assert not png.exists() and not table_csv.exists() and table_md.read_text() == "kept"
    evaluate_profile_file(model_file, path, plot, overwrite=True)  # the frame order
    rows = list(csv.DictReader(table_csv.open()))
    assert [float(r["frame order"]) for r in rows] == [float(r["frame"]) for r in rows]
    assert len(rows) == len(ANGLES)
