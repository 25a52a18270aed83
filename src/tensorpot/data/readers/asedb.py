"""Read ASE databases (``.db``, SQLite) into :class:`Configuration` objects, row by row.

A label is looked up in the row's key-value pairs, then in ``row.data``, then among the
calculator results ASE stores with the row (``energy``, ``forces``, ``stress``, ``dipole``,
...). QM9-style databases (schnetpack's layout) keep their properties in ``row.data`` as
one-element arrays and their units in ``db.metadata["_property_unit_dict"]``.
Frames are numbered 0, 1, ... in the order of ``db.select()`` (ascending row id); that
number is the frame of ``source`` and of every error message.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from contextlib import closing
from functools import partial
from pathlib import Path

import ase.db
import numpy as np
from ase.calculators.calculator import all_properties
from ase.db.row import AtomsRow

from tensorpot.data.configuration import Configuration
from tensorpot.data.readers.labels import (
    MISSING,
    check_property_keys,
    forces_value,
    molecular_labels,
    number_value,
    stress_and_virials,
)
from tensorpot.data.units import energy_factor
from tensorpot.errors import DataError

__all__ = ["read_ase_db"]

logger = logging.getLogger(__name__)


def _check_database(path: Path) -> None:
    """Raise DataError unless ``path`` is an SQLite file with ASE's ``systems`` table.

    Opened read-only: ``ase.db.connect`` would write its tables into any other SQLite file.
    """
    try:
        uri = path.resolve().as_uri() + "?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            query = "SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='systems'"
            (tables,) = connection.execute(query).fetchone()
    except sqlite3.DatabaseError as exc:
        raise DataError(f"not an SQLite database: {exc}", str(path)) from exc
    if not tables:
        raise DataError("not an ASE database (it has no 'systems' table)", str(path))


def _lookup(row: AtomsRow, key: str) -> object:
    """Find ``key`` in the key-value pairs, ``row.data`` or the stored calculator results."""
    pairs = row.key_value_pairs
    if key in pairs:
        return pairs[key]
    data = row.data
    if key in data:
        return data[key]
    if key in all_properties and key in row:
        return row.get(key)
    return MISSING


def _keys_present(row: AtomsRow) -> str:
    results = sorted(k for k in all_properties if k in row)
    return f"key-value pairs {sorted(row.key_value_pairs)}, data {sorted(row.data)}, " + (
        f"calculator {results}"
    )


def _required(
    row: AtomsRow, key: str | None, default: str, name: str, required: bool, file: str, frame: int
) -> object:
    """The value of a named key (an error if ``required`` and absent) or of ``default``."""
    value = _lookup(row, default if key is None else key)
    if value is MISSING and key is not None and required:
        raise DataError(
            f"missing {name} key {key!r}; keys present: {_keys_present(row)}", file, frame
        )
    return value


def _to_configuration(
    row: AtomsRow,
    file: str,
    frame: int,
    keys: dict[str, str | None],
    property_keys: dict[str, str],
    factor: float,
    require_energy: bool,
    require_forces: bool,
) -> Configuration:
    n = int(row.natoms)
    energy = _required(row, keys["energy"], "energy", "energy", require_energy, file, frame)
    energy_key = keys["energy"] or "energy"
    if energy is not MISSING:
        energy = number_value(energy, f"energy key {energy_key!r}", file, frame) * factor
    forces = _required(row, keys["forces"], "forces", "forces", require_forces, file, frame)
    if forces is MISSING:
        # a lone atom feels no force (translation invariance), as in the extxyz reader
        forces = np.zeros((1, 3)) if n == 1 and energy is not MISSING else None
    else:
        forces = forces_value(forces, keys["forces"] or "forces", n, file, frame) * factor
    lookup = partial(_lookup, row)
    cell = np.asarray(row.cell, dtype=np.float64)
    stress, virials = stress_and_virials(lookup, keys, factor, cell, row.pbc, file, frame)
    pairs = row.key_value_pairs
    return Configuration(
        numbers=row.numbers,
        positions=row.positions,
        cell=cell,
        pbc=row.pbc,
        energy=None if energy is MISSING else energy,
        forces=forces,
        stress=stress,
        virials=virials,
        config_type=str(pairs.get(keys["config_type"], "Default")),
        weight=pairs.get(keys["weight"], 1.0),
        source=(file, frame),
        **molecular_labels(lookup, keys, property_keys, file, frame),
    )


def _warn_unconverted(metadata: Mapping, energy_key: str | None, file: str) -> None:
    """Log a warning if the database says its energies are not in eV and no unit was given."""
    units = metadata.get("_property_unit_dict", {}) if isinstance(metadata, Mapping) else {}
    unit = units.get(energy_key or "energy") if isinstance(units, Mapping) else None
    if unit is not None and str(unit).strip().lower() != "ev":
        logger.warning(
            "%s: the database gives energy key %r in %s, kept as it is since no energy_unit "
            "was given (pass energy_unit to convert it to eV)",
            file,
            energy_key or "energy",
            unit,
        )


def read_ase_db(
    path: str | Path,
    energy_key: str | None = None,
    forces_key: str | None = None,
    stress_key: str = "stress",
    virials_key: str = "virials",
    energy_unit: str | None = None,
    property_keys: Mapping[str, str] | None = None,
    dipole_key: str = "dipole",
    polarizability_key: str = "polarizability",
    total_charge_key: str = "total_charge",
    config_type_key: str = "config_type",
    weight_key: str = "config_weight",
    require_energy: bool = True,
    require_forces: bool = True,
) -> list[Configuration]:
    """Read every row of an ASE database.

    Each key is looked up in the row's key-value pairs, then ``row.data``, then the
    calculator results stored with the row. Energies, forces, stress and virials are
    multiplied by the factor of ``energy_unit``; without one they are kept as stored
    (ASE's calculator results are eV, eV/Å and eV/Å³; a warning is logged when the
    database's ``_property_unit_dict`` says the energy key is in another unit). The
    molecular labels (dipole, polarizability, properties, total charge) are never converted.
    Labels other than a named energy or forces key are optional in every row.

    Args:
        path: the ``.db`` file.
        energy_key: per-row total energy; None takes the calculator's energy where a row has
            one (and leaves the energy out where it has none).
        forces_key: per-atom forces ``[N, 3]``; None takes the calculator's forces where a
            row has them. A single-atom row with an energy and no forces gets zero forces.
        stress_key: stress, 6 Voigt values or 9 (ASE stores the calculator's as 6).
        virials_key: virials, 6 or 9 values; for a 3D-periodic cell the missing one of
            stress and virials is derived with ``stress = -virials / volume``.
        energy_unit: unit of the energies (see :mod:`tensorpot.data.units`); None keeps them.
        property_keys: ``{property name: key}`` of named scalar properties (one number each;
            QM9's one-element arrays count), such as ``{"U0": "energy_U0", "gap": "gap"}``.
        dipole_key: dipole, 3 values. QM9's ``dipole_moment`` is a magnitude, a property.
        polarizability_key: polarizability, 9 values (row-major) or 6 Voigt values; it must
            be symmetric.
        total_charge_key: net charge in e (0 where a row has none).
        config_type_key: key-value pair of the structure label (default "Default").
        weight_key: key-value pair of the per-structure loss weight (default 1).
        require_energy: whether a named ``energy_key`` must be in every row.
        require_forces: whether a named ``forces_key`` must be in every row.

    Returns:
        One configuration per row, with ``source = (path, row index)``.

    Raises:
        DataError: naming the file and row index, for a missing file, a file that is not an
            ASE database, an empty database, a missing named energy or forces key (with the
            keys that exist), or a label of the wrong size, non-finite or not symmetric.
        ConfigError: for an unknown ``energy_unit`` or a bad ``property_keys``.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise DataError("file not found", file)
    factor = 1.0 if energy_unit is None else energy_factor(energy_unit)
    properties = check_property_keys(property_keys)
    keys = {
        "energy": energy_key,
        "forces": forces_key,
        "stress": stress_key,
        "virials": virials_key,
        "dipole": dipole_key,
        "polarizability": polarizability_key,
        "total_charge": total_charge_key,
        "config_type": config_type_key,
        "weight": weight_key,
    }
    _check_database(path)
    try:
        database = ase.db.connect(file, type="db", create_indices=False, use_lock_file=False)
        if energy_unit is None:
            _warn_unconverted(database.metadata, energy_key, file)
        rows = list(database.select())
    except (sqlite3.DatabaseError, ValueError, KeyError) as exc:
        raise DataError(f"cannot read the ASE database: {type(exc).__name__}: {exc}", file) from exc
    if not rows:
        raise DataError("the database holds no rows", file)
    configs = [
        _to_configuration(row, file, k, keys, properties, factor, require_energy, require_forces)
        for k, row in enumerate(rows)
    ]
    if factor != 1.0:
        logger.info("%s: energies in %s, multiplied by %.10g to get eV", file, energy_unit, factor)
    return configs
