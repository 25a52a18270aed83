"""Read MD17-family npz files (rMD17 and the NequIP-style MD17 layout).

rMD17 (``coords``, ``energies``, ``forces``, ``nuclear_charges``) stores kcal/mol and
kcal/mol/Å; the NequIP-style layout (``pos``, ``energy``, ``forces``, ``atomic_numbers``,
optional ``cell`` and ``pbc``) of the EGraFFBench MD17 subsets stores eV and eV/Å.
Positions are Å in both.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tensorpot.data.configuration import Configuration
from tensorpot.data.units import energy_factor
from tensorpot.errors import DataError

__all__ = ["RMD17_KEYS", "MD17_KEYS", "load_npz", "read_md17_npz", "read_rmd17_npz"]

logger = logging.getLogger(__name__)

#: The keys that identify an rMD17 file.
RMD17_KEYS = ("coords", "energies", "forces", "nuclear_charges")
#: The keys that identify a NequIP-style MD17 file.
MD17_KEYS = ("pos", "energy", "forces", "atomic_numbers")


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
