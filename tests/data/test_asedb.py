"""The ASE database reader: labels from key-value pairs, row.data and calculator results,
units, errors naming the file and row, on a database written here and on the QM9 sample."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from pathlib import Path

import ase.db
import numpy as np
import pytest
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from tensorpot.data.readers import read_ase_db, read_configurations
from tensorpot.errors import ConfigError, DataError

QM9 = Path(__file__).parents[2].parent / "shared" / "data" / "qm9_sample" / "test_qm9.db"
QM9_KEYS = {"U0": "energy_U0", "homo": "homo", "lumo": "lumo", "gap": "gap", "mu": "dipole_moment"}
ALPHA = np.array([[2.0, 0.1, 0.0], [0.1, 3.0, 0.2], [0.0, 0.2, 4.0]])


def qm9() -> Path:
    if not QM9.is_file():
        pytest.skip("the shared QM9 sample is not available")
    return QM9


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def database(tmp_path) -> Path:
    """Three rows: a labelled bulk cell, a molecule with data labels only, a lone atom."""
    path = tmp_path / "small.db"
    rng = np.random.default_rng(0)
    with ase.db.connect(path) as db:
        bulk = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.4, 1.2]], cell=np.eye(3) * 2.7, pbc=True)
        bulk.calc = SinglePointCalculator(
            bulk,
            energy=-10.5,
            forces=rng.normal(size=(2, 3)),
            stress=np.array([0.01, 0.02, 0.03, 0.004, 0.005, 0.006]),
        )
        db.write(bulk, energy_U0=-10.4, config_type="bulk", config_weight=2.0, total_charge=1)
        water = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
        db.write(
            water,
            data={"mu": np.array([0.1, 0.2, 0.3]), "alpha": ALPHA, "energy_U0": np.array([-76.4])},
        )
        db.write(Atoms("H"), energy_ref=-13.6)
    return path


def test_rows_in_order_with_calculator_labels(database):
    configs = read_ase_db(database)
    assert [c.source for c in configs] == [(str(database), k) for k in range(3)]
    assert [c.n_atoms for c in configs] == [2, 3, 1]
    bulk, water, atom = configs
    with ase.db.connect(database) as db:
        row = db.get(id=1)
        np.testing.assert_array_equal(bulk.forces, row.forces)
        np.testing.assert_array_equal(bulk.stress, row.toatoms().get_stress(voigt=False))
    assert bulk.energy == -10.5 and bulk.pbc.all()
    np.testing.assert_allclose(bulk.virials, -bulk.stress * 2.7**3, rtol=1e-14)
    assert bulk.config_type == "bulk" and bulk.weight == 2.0 and bulk.total_charge == 1.0
    assert water.energy is None and water.forces is None and water.stress is None
    assert water.config_type == "Default" and water.total_charge == 0.0
    assert atom.energy is None and atom.forces is None


def test_properties_and_tensors_from_pairs_data_and_calculator(database):
    configs = read_ase_db(
        database,
        property_keys={"U0": "energy_U0", "E": "energy", "ref": "energy_ref"},
        dipole_key="mu",
        polarizability_key="alpha",
    )
    bulk, water, atom = configs
    assert dict(bulk.properties) == {"U0": -10.4, "E": -10.5}  # a pair and a result
    assert dict(water.properties) == {"U0": -76.4}  # a one-element array in row.data
    assert dict(atom.properties) == {"ref": -13.6}
    np.testing.assert_array_equal(water.dipole, [0.1, 0.2, 0.3])
    np.testing.assert_array_equal(water.polarizability, ALPHA)
    assert bulk.dipole is None and bulk.polarizability is None


def test_energy_unit_converts_energy_forces_stress_not_properties(database):
    plain = read_ase_db(database, property_keys={"U0": "energy_U0"})
    kcal = read_ase_db(database, energy_unit="kcal/mol", property_keys={"U0": "energy_U0"})
    factor = units.kcal / units.mol
    assert kcal[0].energy == pytest.approx(plain[0].energy * factor, rel=1e-15)
    np.testing.assert_allclose(kcal[0].forces, plain[0].forces * factor, rtol=1e-15)
    np.testing.assert_allclose(kcal[0].stress, plain[0].stress * factor, rtol=1e-15)
    assert kcal[0].properties == plain[0].properties


def test_named_energy_key_and_lone_atom_forces(database):
    with pytest.raises(DataError) as info:
        read_ase_db(database, energy_key="energy")
    message = str(info.value)
    assert "small.db" in message and info.value.frame == 1
    assert (
        "missing energy key 'energy'" in message and "data ['alpha', 'energy_U0', 'mu']" in message
    )
    configs = read_ase_db(database, energy_key="energy_ref", require_energy=False)
    assert [c.energy for c in configs] == [None, None, -13.6]
    np.testing.assert_array_equal(configs[2].forces, np.zeros((1, 3)))  # a lone atom
    with pytest.raises(DataError, match="frame 1: missing forces key 'forces'"):
        read_ase_db(database, forces_key="forces")


@pytest.mark.parametrize(
    "options, part",
    [
        ({"dipole_key": "energy_U0"}, "frame 0: dipole key 'energy_U0' must have 3 values"),
        ({"polarizability_key": "mu"}, "frame 1: polarizability key 'mu' must have 9 values"),
        ({"property_keys": {"mu": "mu"}}, "frame 1: property 'mu' key 'mu' must be one number"),
        ({"energy_key": "config_type"}, "frame 0: energy key 'config_type' is not numeric"),
    ],
)
def test_bad_values_name_file_row_and_key(database, options, part):
    with pytest.raises(DataError) as info:
        read_ase_db(database, **options)
    assert "small.db" in str(info.value) and part in str(info.value)


def test_read_configurations_takes_db_files(database):
    configs = read_configurations(database, property_keys={"U0": "energy_U0"})
    assert [dict(c.properties) for c in configs] == [{"U0": -10.4}, {"U0": -76.4}, {}]
    with pytest.raises(ConfigError, match="index"):
        read_configurations(database, index=":2")


def test_not_an_ase_database_is_left_untouched(tmp_path):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x INTEGER)")
    before = digest(other)
    with pytest.raises(DataError, match="other.db: not an ASE database"):
        read_ase_db(other)
    assert digest(other) == before
    text = tmp_path / "text.db"
    text.write_text("not sqlite at all, " * 20)
    with pytest.raises(DataError, match="text.db: not an SQLite database"):
        read_ase_db(text)
    with pytest.raises(DataError, match="file not found"):
        read_ase_db(tmp_path / "absent.db")
    assert not (tmp_path / "absent.db").exists()


def test_empty_database(tmp_path):
    path = tmp_path / "empty.db"
    with ase.db.connect(path) as db:
        db.delete([db.write(Atoms("H"))])
    with pytest.raises(DataError, match="empty.db: the database holds no rows"):
        read_ase_db(path)


# ---- the QM9 sample (schnetpack's test database) ------------------------------------------


def test_qm9_properties_match_row_data_and_file_is_unchanged():
    path = qm9()
    before = digest(path)
    configs = read_configurations(path, property_keys=QM9_KEYS)
    assert digest(path) == before
    with ase.db.connect(path) as db:
        rows = list(db.select())
        assert db.metadata["_property_unit_dict"]["energy_U0"] == "Ha"
    assert len(configs) == len(rows) == 20
    for k, (config, row) in enumerate(zip(configs, rows, strict=True)):
        assert config.source == (str(path), k)
        np.testing.assert_array_equal(config.numbers, row.numbers)
        np.testing.assert_array_equal(config.positions, row.positions)
        assert not config.pbc.any()
        assert config.energy is None and config.forces is None and config.dipole is None
        expected = {name: float(row.data[key][0]) for name, key in QM9_KEYS.items()}
        assert dict(config.properties) == expected  # Hartree and Debye, not converted
    assert configs[1].properties["gap"] == pytest.approx(
        configs[1].properties["lumo"] - configs[1].properties["homo"], abs=1e-4
    )


def test_qm9_energy_in_hartree_converted_on_request(caplog):
    path = qm9()
    with caplog.at_level(logging.WARNING, logger="tensorpot.data.readers.asedb"):
        kept = read_ase_db(path, energy_key="energy_U0")
    assert "'energy_U0' in Ha" in caplog.text
    converted = read_ase_db(path, energy_key="energy_U0", energy_unit="Hartree")
    for a, b in zip(kept, converted, strict=True):
        assert b.energy == pytest.approx(a.energy * units.Hartree, rel=1e-15)
        assert a.forces is None  # QM9 has no forces; a named forces key would be required
    assert kept[0].energy == pytest.approx(-40.47893)


def test_qm9_dipole_moment_is_a_magnitude_not_a_vector():
    with pytest.raises(DataError, match="frame 0: dipole key 'dipole_moment' must have 3 values"):
        read_ase_db(qm9(), dipole_key="dipole_moment")
