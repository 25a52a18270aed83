"""Checks shared by the readers for per-frame labels: stress and virials, dipole,
polarizability, properties and other single numbers.

Each check turns one raw value of a file into what :class:`~tensorpot.data.Configuration`
takes, or raises a :class:`~tensorpot.errors.DataError` that names the file, the frame and
the key. The molecular labels keep their own units; no reader converts them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from ase.stress import voigt_6_to_full_3x3_stress

from tensorpot.data.configuration import fill_stress_virials
from tensorpot.errors import ConfigError, DataError

__all__ = [
    "MISSING", "check_property_keys", "dipole_value", "forces_value", "molecular_labels",
    "number_value", "polarizability_value", "stress_and_virials", "tensor3_value",
]  # fmt: skip

#: What a reader's ``lookup(key)`` returns for a key the frame does not have.
MISSING = object()
Lookup = Callable[[str], object]


def _numeric(value: object, what: str, file: str, frame: int | None) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{what} is not numeric: {value!r}", file, frame)
    return array.astype(np.float64)


def forces_value(value: object, key: str, n_atoms: int, file: str, frame: int | None) -> np.ndarray:
    """Forces of a frame of ``n_atoms`` atoms as a [n_atoms, 3] float array."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf" or array.shape != (n_atoms, 3):
        raise DataError(
            f"forces key {key!r} must be a [{n_atoms}, 3] number array, "
            f"got {array.dtype} {list(array.shape)}",
            file,
            frame,
        )
    return array.astype(np.float64)


def tensor3_value(value: object, key: str, name: str, file: str, frame: int | None) -> np.ndarray:
    """A stress/virial value of 6 (Voigt xx yy zz yz xz xy) or 9 values as a [3, 3] array."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{name} key {key!r} is not numeric: {value!r}", file, frame)
    array = array.astype(np.float64)
    if array.size == 6:
        return voigt_6_to_full_3x3_stress(array.reshape(6))
    if array.size == 9:
        # ASE's column-major order for the 9-value form
        return array.reshape(3, 3) if array.shape == (3, 3) else array.reshape(3, 3, order="F")
    raise DataError(
        f"{name} key {key!r} has {array.size} values; expected 6 (Voigt) or 9", file, frame
    )


def dipole_value(value: object, key: str, file: str, frame: int | None) -> np.ndarray:
    """A dipole of 3 values (any shape) as a [3] array."""
    array = _numeric(value, f"dipole key {key!r}", file, frame)
    if array.size != 3:
        raise DataError(f"dipole key {key!r} must have 3 values, got {array.size}", file, frame)
    return array.reshape(3)


def polarizability_value(value: object, key: str, file: str, frame: int | None) -> np.ndarray:
    """A polarizability of 9 values (3x3, row-major) or 6 (Voigt xx yy zz yz xz xy), flat.

    :class:`~tensorpot.data.Configuration` turns it into a symmetric [3, 3] array.
    """
    array = _numeric(value, f"polarizability key {key!r}", file, frame)
    if array.size not in (6, 9):
        raise DataError(
            f"polarizability key {key!r} must have 9 values (3x3) or 6 (Voigt xx yy zz yz xz "
            f"xy), got {array.size}",
            file,
            frame,
        )
    return array.reshape(-1)


def number_value(value: object, what: str, file: str, frame: int | None) -> float:
    """One number (a size-1 array counts, as ASE databases store one) as a float."""
    array = _numeric(value, what, file, frame)
    if array.size != 1:
        raise DataError(f"{what} must be one number, got {array.size} values", file, frame)
    return float(array.reshape(-1)[0])


def check_property_keys(property_keys: Mapping[str, str] | None) -> dict[str, str]:
    """``{property name: key in the file}`` as a dict, or ConfigError if it is not one."""
    if property_keys is None:
        return {}
    if not isinstance(property_keys, Mapping):
        raise ConfigError(f"property_keys must be a mapping {{name: key}}, got {property_keys!r}")
    for name, key in property_keys.items():
        if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
            raise ConfigError(
                f"property_keys must map non-empty names to non-empty keys, got {name!r}: {key!r}"
            )
    return dict(property_keys)


def stress_and_virials(
    lookup: Lookup,
    keys: Mapping[str, str],
    factor: float,
    cell: np.ndarray,
    pbc: np.ndarray,
    file: str,
    frame: int | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Stress and virials of a frame (each optional) times ``factor``; for a 3D-periodic
    cell the missing one is derived from the other (:func:`fill_stress_virials`)."""
    tensors = {}
    for name in ("stress", "virials"):
        value = lookup(keys[name])
        tensors[name] = (
            None
            if value is MISSING
            else tensor3_value(value, keys[name], name, file, frame) * factor
        )
    return fill_stress_virials(tensors["stress"], tensors["virials"], cell, pbc)


def molecular_labels(
    lookup: Lookup,
    keys: Mapping[str, str],
    property_keys: Mapping[str, str],
    file: str,
    frame: int | None,
) -> dict:
    """Dipole, polarizability, total charge and properties of a frame, each optional, as
    keyword arguments of :class:`~tensorpot.data.Configuration` (charge 0 when absent)."""
    dipole = lookup(keys["dipole"])
    polarizability = lookup(keys["polarizability"])
    charge = lookup(keys["total_charge"])
    properties = {}
    for name, key in property_keys.items():
        value = lookup(key)
        if value is not MISSING:
            properties[name] = number_value(value, f"property {name!r} key {key!r}", file, frame)
    return {
        "dipole": None if dipole is MISSING else dipole_value(dipole, keys["dipole"], file, frame),
        "polarizability": (
            None
            if polarizability is MISSING
            else polarizability_value(polarizability, keys["polarizability"], file, frame)
        ),
        "total_charge": (
            0.0
            if charge is MISSING
            else number_value(charge, f"total_charge key {keys['total_charge']!r}", file, frame)
        ),
        "properties": properties,
    }
