"""Readers that turn data files into lists of :class:`~tensorpot.data.Configuration`."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tensorpot.data.configuration import Configuration
from tensorpot.data.readers.asedb import read_ase_db
from tensorpot.data.readers.extxyz import read_extxyz, read_extxyz_atoms
from tensorpot.data.readers.npz import (
    MD17_KEYS,
    RMD17_KEYS,
    SGDML_KEYS,
    read_md17_npz,
    read_rmd17_npz,
    read_sgdml_npz,
)
from tensorpot.errors import ConfigError, DataError

__all__ = [
    "read_ase_db", "read_configurations", "read_extxyz", "read_extxyz_atoms", "read_md17_npz",
    "read_rmd17_npz", "read_sgdml_npz",
]  # fmt: skip

_EXTXYZ_SUFFIXES = (".xyz", ".extxyz")
_NPZ_OPTIONS = ("energy_unit", "energy_key", "forces_key")
_NPZ_READERS = {"rmd17": read_rmd17_npz, "md17": read_md17_npz, "sgdml": read_sgdml_npz}
_EXTXYZ_OPTIONS = (
    "energy_key",
    "forces_key",
    "stress_key",
    "virials_key",
    "energy_unit",
    "index",
    "config_type_key",
    "weight_key",
    "require_forces",
    "require_energy",
    "dipole_key",
    "polarizability_key",
    "total_charge_key",
    "property_keys",
)
_ASEDB_OPTIONS = (
    "energy_key",
    "forces_key",
    "stress_key",
    "virials_key",
    "energy_unit",
    "property_keys",
    "dipole_key",
    "polarizability_key",
    "total_charge_key",
    "config_type_key",
    "weight_key",
    "require_energy",
    "require_forces",
)


def _check_options(path: Path, keys: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{path}: option(s) {unknown} do not apply to {path.suffix} files; "
            f"allowed: {list(allowed)}"
        )


def _npz_layout(path: Path) -> str:
    """Return "rmd17", "md17" or "sgdml" from the keys of an npz file (arrays not loaded)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"not a readable npz file: {exc}", str(path)) from exc
    if "coords" in keys or "nuclear_charges" in keys:
        return "rmd17"
    if "pos" in keys or "atomic_numbers" in keys:
        return "md17"
    if "R" in keys or "z" in keys:
        return "sgdml"
    raise DataError(
        f"unknown npz layout: expected rMD17 keys {list(RMD17_KEYS)}, MD17 keys "
        f"{list(MD17_KEYS)} or sGDML/MD22 keys {list(SGDML_KEYS)}; keys present: {sorted(keys)}",
        str(path),
    )


def read_configurations(path: str | Path, **keys: Any) -> list[Configuration]:
    """Read a data file, choosing the reader from its suffix.

    ``.xyz`` and ``.extxyz`` go to :func:`read_extxyz`, ``.db`` (ASE database) to
    :func:`read_ase_db`. ``.npz`` goes to
    :func:`read_rmd17_npz` if the file has ``coords``/``nuclear_charges`` and to
    :func:`read_md17_npz` if it has ``pos``/``atomic_numbers`` and to :func:`read_sgdml_npz`
    (sGDML and MD22) if it has ``R``/``z``; each keeps its own default ``energy_unit``
    (kcal/mol for rMD17, eV for MD17, the file's ``e_unit`` or kcal/mol for sGDML) unless one
    is passed.

    Args:
        path: the file.
        **keys: options of the chosen reader (``energy_key``, ``energy_unit``, ...).

    Returns:
        The configurations of the file.

    Raises:
        DataError: for a missing file, an unknown suffix or npz layout, or bad content.
        ConfigError: for an option the chosen reader does not take.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", str(path))
    suffix = path.suffix.lower()
    if suffix in _EXTXYZ_SUFFIXES:
        _check_options(path, keys, _EXTXYZ_OPTIONS)
        return read_extxyz(path, **keys)
    if suffix == ".npz":
        _check_options(path, keys, _NPZ_OPTIONS)
        return _NPZ_READERS[_npz_layout(path)](path, **keys)
    if suffix == ".db":
        _check_options(path, keys, _ASEDB_OPTIONS)
        return read_ase_db(path, **keys)
    raise DataError(f"unknown file type {suffix!r}; supported: .xyz, .extxyz, .npz, .db", str(path))
