"""Read MD17-family npz files (rMD17, the NequIP-style MD17 layout, sGDML and MD22).

rMD17 (``coords``, ``energies``, ``forces``, ``nuclear_charges``) stores kcal/mol and
kcal/mol/Å; the NequIP-style layout (``pos``, ``energy``, ``forces``, ``atomic_numbers``,
optional ``cell`` and ``pbc``) of the EGraFFBench MD17 subsets stores eV and eV/Å.
Positions are Å in both. The sGDML layout (``R``, ``E``, ``F``, ``z``), which MD22 uses too,
names its units in ``e_unit`` and ``r_unit`` when it has them, and is kcal/mol and Å otherwise.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tensorpot.data.configuration import Configuration
from tensorpot.data.units import energy_factor, length_factor
from tensorpot.errors import ConfigError, DataError

__all__ = [
    "MD17_KEYS", "RMD17_KEYS", "SGDML_KEYS", "load_npz", "read_md17_npz", "read_rmd17_npz",
    "read_sgdml_npz",
]  # fmt: skip

logger = logging.getLogger(__name__)

#: The keys that identify an rMD17 file.
RMD17_KEYS = ("coords", "energies", "forces", "nuclear_charges")
#: The keys that identify a NequIP-style MD17 file.
MD17_KEYS = ("pos", "energy", "forces", "atomic_numbers")
#: The keys that identify an sGDML (or MD22) file.
SGDML_KEYS = ("R", "E", "F", "z")


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an npz file (no pickles), raising DataError if it cannot be read."""
    file = str(path)
    if not Path(path).is_file():
        raise DataError("file not found", file)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"not a readable npz file: {exc}", file) from exc


def _get(data: Mapping[str, np.ndarray], key: str, file: str) -> np.ndarray:
    if key not in data:
        raise DataError(f"missing key {key!r}; keys present: {sorted(data)}", file)
    array = np.asarray(data[key])
    if array.dtype.kind not in "iuf" and key not in ("pbc",):
        raise DataError(f"key {key!r} is not numeric (dtype {array.dtype})", file)
    return array


def _frames_of(
    file: str,
    positions: np.ndarray,
    energies: np.ndarray,
    forces: np.ndarray,
    numbers: np.ndarray,
    keys: tuple[str, str, str, str],
    factor: float,
    cells: np.ndarray | None = None,
    pbc: np.ndarray | None = None,
) -> list[Configuration]:
    """Check the shapes of stacked arrays and build one Configuration per frame."""
    pos_key, energy_key, forces_key, numbers_key = keys
    if positions.ndim != 3 or positions.shape[2] != 3:
        raise DataError(f"{pos_key!r} must have shape [frames, N, 3], got {positions.shape}", file)
    n_frames, n_atoms = positions.shape[:2]
    if n_frames == 0:
        raise DataError("the file holds no frames", file)
    if energies.size != n_frames:
        raise DataError(
            f"{energy_key!r} has shape {energies.shape} but {pos_key!r} holds {n_frames} frames",
            file,
        )
    energies = energies.reshape(n_frames)
    if forces.shape != positions.shape:
        raise DataError(
            f"{forces_key!r} has shape {forces.shape}, {pos_key!r} has {positions.shape}", file
        )
    if numbers.shape == (n_atoms,):
        numbers = np.broadcast_to(numbers, (n_frames, n_atoms))
    elif numbers.shape != (n_frames, n_atoms):
        raise DataError(f"{numbers_key!r} has shape {numbers.shape}, expected ({n_atoms},)", file)
    if pbc is None or not np.any(pbc):
        pbc, cells = np.zeros(3, dtype=bool), None  # a molecule: any stored cell is a dummy
    elif cells is None:
        raise DataError("periodic ('pbc' set) but there is no 'cell' key", file)
    else:
        pbc = np.asarray(pbc, dtype=bool).reshape(3)
        if cells.shape == (3, 3):
            cells = np.broadcast_to(cells, (n_frames, 3, 3))
        elif cells.shape != (n_frames, 3, 3):
            raise DataError(f"'cell' has shape {cells.shape}, expected (3, 3)", file)
    return [
        Configuration(
            numbers=numbers[k],
            positions=positions[k],
            cell=np.zeros((3, 3)) if cells is None else cells[k],
            pbc=pbc,
            energy=float(energies[k]) * factor,
            forces=forces[k] * factor,
            source=(file, k),
        )
        for k in range(n_frames)
    ]


def _log_factor(file: str, unit: str, factor: float) -> None:
    if factor != 1.0:
        logger.info("%s: energies in %s, multiplied by %.10g to get eV", file, unit, factor)


def read_rmd17_npz(
    path: str | Path,
    energy_unit: str = "kcal/mol",
    energy_key: str = "energies",
    forces_key: str = "forces",
) -> list[Configuration]:
    """Read an rMD17 npz file (Christensen & von Lilienfeld 2020).

    Args:
        path: the file.
        energy_unit: unit of energies (forces are in that unit per Å); rMD17 is kcal/mol.
        energy_key: ``"energies"``, or ``"old_energies"`` for the original MD17 labels.
        forces_key: ``"forces"``, or ``"old_forces"`` for the original MD17 labels.

    Returns:
        One molecule (no cell, no pbc) per frame, in eV and eV/Å.

    Raises:
        DataError: for a missing key (named), inconsistent shapes, NaN/inf values or
            coincident atoms (naming the frame).
    """
    file = str(path)
    factor = energy_factor(energy_unit)
    data = load_npz(path)
    configs = _frames_of(
        file,
        _get(data, "coords", file),
        _get(data, energy_key, file),
        _get(data, forces_key, file),
        _get(data, "nuclear_charges", file),
        ("coords", energy_key, forces_key, "nuclear_charges"),
        factor,
    )
    _log_factor(file, energy_unit, factor)
    return configs


def read_md17_npz(
    path: str | Path,
    energy_unit: str = "eV",
    energy_key: str = "energy",
    forces_key: str = "forces",
) -> list[Configuration]:
    """Read a NequIP-style npz file (``pos``, ``energy``, ``forces``, ``atomic_numbers``).

    This is the layout of the EGraFFBench MD17 subsets (eV, eV/Å). If the file has a
    ``pbc`` key with any True entry, its ``cell`` ([3, 3] or [frames, 3, 3]) is used;
    otherwise the structures are molecules and a stored ``cell`` is ignored.

    Args:
        path: the file.
        energy_unit: unit of energies (forces are in that unit per Å).
        energy_key: per-frame energy key, shape [frames] or [frames, 1].
        forces_key: forces key, shape [frames, N, 3].

    Returns:
        One configuration per frame, in eV and eV/Å.

    Raises:
        DataError: for a missing key (named), inconsistent shapes, NaN/inf values or
            coincident atoms (naming the frame).
    """
    file = str(path)
    factor = energy_factor(energy_unit)
    data = load_npz(path)
    configs = _frames_of(
        file,
        _get(data, "pos", file),
        _get(data, energy_key, file),
        _get(data, forces_key, file),
        _get(data, "atomic_numbers", file),
        ("pos", energy_key, forces_key, "atomic_numbers"),
        factor,
        cells=data.get("cell"),
        pbc=data.get("pbc"),
    )
    _log_factor(file, energy_unit, factor)
    return configs


def _unit_key(data: Mapping[str, np.ndarray], key: str, file: str) -> str | None:
    """The unit string stored under ``key`` (a 0-d text array, as sGDML writes it), or None."""
    if key not in data:
        return None
    array = np.asarray(data[key])
    if array.dtype.kind not in "US" or array.size != 1:
        raise DataError(
            f"{key!r} must be one unit string, got dtype {array.dtype}, shape {array.shape}", file
        )
    value = array.reshape(()).item()
    return value.decode() if isinstance(value, bytes) else str(value)


def _file_factor(
    stated: str | None, given: str | None, default: str, key: str, kind: str, file: str
) -> tuple[str, float]:
    """``(unit, factor to eV or Å)`` from the unit a file states and the one a caller gives.

    The file's unit wins over the default; a caller's unit that disagrees with it is an error
    rather than a silent choice between the two.
    """
    convert = energy_factor if kind == "energy" else length_factor
    if stated is not None:
        try:
            factor = convert(stated)
        except ConfigError as exc:
            raise DataError(f"{key} {stated!r}: {exc}", file) from None
        if given is not None and convert(given) != factor:
            raise DataError(
                f"the file states {key} {stated!r}, but {kind} unit {given!r} was given", file
            )
        return stated, factor
    unit = default if given is None else given
    return unit, convert(unit)


def read_sgdml_npz(
    path: str | Path,
    energy_unit: str | None = None,
    energy_key: str = "E",
    forces_key: str = "F",
) -> list[Configuration]:
    """Read an sGDML-layout npz file (``R``, ``E``, ``F``, ``z``): sGDML data sets and MD22.

    Shapes: ``R`` [frames, N, 3], ``E`` [frames] or [frames, 1], ``F`` [frames, N, 3],
    ``z`` [N]. Units: ``e_unit`` (energies; forces are ``e_unit``/``r_unit``) and ``r_unit``
    (positions) when the file has them, else kcal/mol and Å, the units of MD22 and of the
    sGDML MD17 files. An optional ``lattice`` [3, 3] (in ``r_unit``) makes every frame
    periodic in all three directions, as sGDML takes it.

    Args:
        path: the file.
        energy_unit: the energy unit, for a file that does not state it (``e_unit``); if the
            file does, it must agree.
        energy_key: per-frame energy key.
        forces_key: forces key.

    Returns:
        One configuration per frame, in Å, eV and eV/Å.

    Raises:
        DataError: for a missing key (named), inconsistent shapes, an unknown unit in the file
            or one that contradicts ``energy_unit``, NaN/inf values or coincident atoms
            (naming the frame).
        ConfigError: for an unknown ``energy_unit``.
    """
    file = str(path)
    data = load_npz(path)
    e_unit, e_factor = _file_factor(
        _unit_key(data, "e_unit", file), energy_unit, "kcal/mol", "e_unit", "energy", file
    )
    r_unit, r_factor = _file_factor(
        _unit_key(data, "r_unit", file), None, "Å", "r_unit", "length", file
    )
    lattice = data.get("lattice")
    if lattice is not None:
        lattice = _get(data, "lattice", file) * r_factor
    configs = _frames_of(
        file,
        _get(data, "R", file) * r_factor,
        _get(data, energy_key, file),
        _get(data, forces_key, file) / r_factor,  # e_unit/r_unit -> e_unit/Å; e_factor follows
        _get(data, "z", file),
        ("R", energy_key, forces_key, "z"),
        e_factor,
        cells=lattice,
        pbc=None if lattice is None else np.ones(3, dtype=bool),
    )
    _log_factor(file, e_unit, e_factor)
    if r_factor != 1.0:
        logger.info("%s: positions in %s, multiplied by %.10g to get Å", file, r_unit, r_factor)
    return configs
