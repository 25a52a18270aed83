"""benchmarks/mace_tensorial.py: MACE's keys, flags, log parsing and error metrics; a real
(tiny) MACE run of both tensorial models in the slow set. Skipped without mace-torch."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import ase
import ase.io
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

# find_spec, not importorskip: ``import mace`` sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for the
# whole test process; the module under test imports it only where needed and undoes that.
if importlib.util.find_spec("mace") is None:
    pytest.skip("mace-torch is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "mace_tensorial", ROOT / "benchmarks" / "mace_tensorial.py"
)
mt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mt)


def molecule(seed: int) -> ase.Atoms:
    """A random small H/C/O molecule with labels stored as the data set stores them."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    numbers = rng.choice([1, 6, 8], size=n)
    positions = np.cumsum(rng.normal(0.0, 0.7, size=(n, 3)) + [1.1, 0.0, 0.0], axis=0)
    atoms = ase.Atoms(numbers=numbers, positions=positions)
    a = rng.normal(size=(3, 3))
    atoms.info["polarizability"] = (a @ a.T + n * np.eye(3)).reshape(9)
    atoms.info["total_charge"] = 0
    atoms.info["molecule"] = f"m{seed}"
    atoms.arrays["xtb_charges"] = rng.normal(size=n)
    atoms.calc = SinglePointCalculator(
        atoms,
        energy=float(-10.0 * n + rng.normal()),
        forces=rng.normal(size=(n, 3)),
        dipole=rng.normal(size=3),
    )
    return atoms


def write_set(path: Path, seeds) -> Path:
    ase.io.write(path, [molecule(s) for s in seeds], format="extxyz")
    return path


def isolated_atoms(path: Path) -> Path:
    frames = []
    for z, e in ((1, -10.5), (6, -48.0), (8, -102.0)):
        atoms = ase.Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]])
        atoms.info["config_type"] = "IsolatedAtom"
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.zeros((1, 3)))
        frames.append(atoms)
    ase.io.write(path, frames, format="extxyz")
    return path


def test_ase_moves_the_dipole_out_of_info(tmp_path):
    """The reason for prepare_xyz: MACE reads dipoles from atoms.info only."""
    frame = ase.io.read(write_set(tmp_path / "a.xyz", [0]), index=0)
    assert "dipole" not in frame.info and "dipole" in frame.calc.results


def test_prepare_xyz_writes_mace_keys(tmp_path):
    src = write_set(tmp_path / "src.xyz", range(6))
    dst = mt.prepare_xyz(src, tmp_path / "dst.xyz")
    before = ase.io.read(src, index=":")
    after = ase.io.read(dst, index=":")
    assert len(after) == 6
    for a, b in zip(before, after):
        assert b.calc is None
        assert {"REF_energy", "REF_dipole", "REF_polarizability", "total_charge"} <= set(b.info)
        assert "REF_forces" in b.arrays
        la, lb = mt.labels_of(a), mt.labels_of(b)
        assert la["energy"] == pytest.approx(lb["energy"])
        for key in ("forces", "dipole", "polarizability"):
            np.testing.assert_allclose(la[key], lb[key])
        centred = a.positions - a.positions.mean(axis=0)  # extxyz keeps 8 decimals
        np.testing.assert_allclose(centred, b.positions, rtol=0, atol=1e-7)
    subset = ase.io.read(mt.prepare_xyz(src, tmp_path / "sub.xyz", limit=3, seed=1), ":")
    assert len(subset) == 3


def test_e0s_and_flags(tmp_path):
    e0s = mt.isolated_atom_energies(isolated_atoms(tmp_path / "iso.xyz"))
    assert e0s == {1: -10.5, 6: -48.0, 8: -102.0}
    args = mt.mace_args(
        "AtomicDielectricMACE",
        tmp_path / "train.xyz",
        tmp_path,
        epochs=3,
        size={"num_channels": 8, "max_L": 2},
        e0s=e0s,
    )
    assert "--model=AtomicDielectricMACE" in args and "--loss=dipole_polar" in args
    assert "--hidden_irreps=8x0e+8x1o+8x2e" in args
    assert "--dipole_key=REF_dipole" in args and "--default_dtype=float64" in args
    assert "--E0s={1: -10.5, 6: -48.0, 8: -102.0}" in args
    assert "--polarizability_weight=1.0" in args and "--max_num_epochs=3" in args
    with pytest.raises(ValueError):
        mt.mace_args("MACE", tmp_path / "t.xyz", tmp_path, epochs=1)


def test_parse_log():
    text = (
        "2026-01-02 03:04:05.100 INFO: Initial: head: Default, loss=1.0, RMSE_MU_per_atom=1\n"
        "2026-01-02 03:04:07.350 INFO: Epoch 0: head: Default, loss=0.5, RMSE_MU_per_atom=1\n"
        "2026-01-02 03:04:10.350 INFO: Epoch 1: head: Default, loss=0.4, RMSE_MU_per_atom=1\n"
    )
    stamps = mt.parse_log(text)
    assert [e for e, _ in stamps] == [None, 0, 1]
    assert stamps[1][1] - stamps[0][1] == pytest.approx(2.25)
    assert stamps[2][1] - stamps[1][1] == pytest.approx(3.0)


def test_error_metrics_definitions():
    frames = [molecule(0), molecule(1)]
    labels = [mt.labels_of(a) for a in frames]
    n = np.array([len(a) for a in frames], dtype=float)
    pred = {
        "energy": np.array([lab["energy"] for lab in labels]) + [0.002, -0.004],
        "forces": [lab["forces"] + 0.01 for lab in labels],
        "dipole": np.array([lab["dipole"] for lab in labels]) + [[0.1, 0.0, 0.0], [0, 0, 0]],
        "polarizability": np.array([lab["polarizability"] for lab in labels]) + 0.5,
    }
    table = mt.error_metrics(frames, pred)
    assert table["energy_mae"] == pytest.approx(3.0)  # meV
    assert table["energy_rmse"] == pytest.approx(math.sqrt((4 + 16) / 2))
    assert table["energy_mae_per_atom"] == pytest.approx((2 / n[0] + 4 / n[1]) / 2)
    assert table["forces_mae"] == pytest.approx(10.0)  # meV/Å
    assert table["dipole_mae"] == pytest.approx(0.1 / 6)  # e·Å, per component
    assert table["dipole_rmse_per_atom"] == pytest.approx(math.sqrt((0.1 / n[0]) ** 2 / 6))
    mu = labels[0]["dipole"]
    norm_error = np.linalg.norm(mu + [0.1, 0, 0]) - np.linalg.norm(mu)
    assert table["dipole_norm_mae"] == pytest.approx(abs(norm_error) / 2)
    assert table["polarizability_mae"] == pytest.approx(0.5)  # Å^3, 9 components
    assert table["polarizability_mae_per_atom"] == pytest.approx(np.mean(0.5 / n))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["EnergyDipolesMACE", "AtomicDielectricMACE"])
def test_tiny_mace_run_matches_its_own_table(tmp_path, kind):
    """One epoch of a tiny model through mace.cli.run_train; our metrics on the validation
    file equal the RMSEs of MACE's own final table (per atom, in its milli-units)."""
    train = write_set(tmp_path / "train.xyz", range(20))
    valid = write_set(tmp_path / "valid.xyz", range(100, 106))
    run = mt.train_mace(
        kind,
        train,
        None,
        1,
        tmp_path / "run",
        {"num_channels": 4, "max_L": 2, "correlation": 2, "r_max": 4.0},
        threads=1,
        valid_file=valid,
        e0s=isolated_atoms(tmp_path / "iso.xyz"),
    )
    assert Path(run["model_path"]).exists() and run["epochs"] == 1
    assert run["train_seconds"] > 0 and len(run["epoch_seconds"]) == 1
    results = mt.evaluate_mace(run["model_path"], {"valid": valid}, threads=1)
    assert mt.NO_WEIGHTS_ONLY not in os.environ  # import_mace put it back
    table = results["valid"]
    assert table["n_structures"] == 6
    row = next(r for r in run["error_table"].splitlines() if "valid_Default" in r)
    cells = [c.strip() for c in row.strip("|").split("|")]
    if kind == "EnergyDipolesMACE":
        assert {"energy_rmse_per_atom", "forces_rmse", "dipole_norm_mae"} <= set(table)
        assert float(cells[1]) == pytest.approx(table["energy_rmse_per_atom"], abs=0.06)
        assert float(cells[2]) == pytest.approx(table["forces_rmse"], abs=0.06)
        assert float(cells[4]) == pytest.approx(1e3 * table["dipole_rmse_per_atom"], abs=0.06)
    else:
        assert "energy_mae" not in table and "polarizability_rmse" in table
        assert float(cells[1]) == pytest.approx(1e3 * table["dipole_rmse_per_atom"], abs=6e-3)
        assert float(cells[3]) == pytest.approx(
            1e3 * table["polarizability_rmse_per_atom"], abs=6e-3
        )
