"""Read extended-XYZ files into :class:`Configuration` objects, frame by frame.

The file is split into frames here (count line, comment line, atom lines), so every
problem, including one ASE reports without a position, is raised as a
:class:`~tensorpot.errors.DataError` naming the file, the 0-based frame and the line.
Each frame is then parsed by ASE's extxyz reader.
"""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from functools import partial
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.io.extxyz import key_val_str_to_dict

from tensorpot.data.configuration import Configuration
from tensorpot.data.readers.labels import (
    MISSING,
    check_property_keys,
    forces_value,
    molecular_labels,
    stress_and_virials,
)
from tensorpot.data.units import energy_factor
from tensorpot.errors import DataError

__all__ = ["read_extxyz", "read_extxyz_atoms"]

logger = logging.getLogger(__name__)

# ASE insists on 9 values for these keys; a 6-value (Voigt) entry is read under a new name.
_SPECIAL_KEY = re.compile(r"(^|\s)(stress|virial)=")
_RENAMED = "_tensorpot_voigt_"


def _parse_comment(line: str) -> dict:
    """ASE's comment-line parser that also accepts 6 Voigt values for stress and virial."""
    try:
        return key_val_str_to_dict(line)
    except ValueError:
        info = key_val_str_to_dict(_SPECIAL_KEY.sub(rf"\1{_RENAMED}\2=", line))
        for key in ("stress", "virial"):
            if _RENAMED + key in info:
                info[key] = info.pop(_RENAMED + key)
        return info


def _frames(path: Path) -> Iterator[tuple[int, int, str]]:
    """Yield ``(frame, first line number, text)`` for every frame of an extxyz file."""
    name = str(path)
    with open(path, encoding="utf-8") as handle:
        frame, lineno = 0, 0
        while True:
            header = handle.readline()
            lineno += 1
            if header == "":
                return
            if not header.strip():
                if handle.read().strip():
                    raise DataError(
                        f"line {lineno}: blank line where the atom count was expected", name, frame
                    )
                return
            try:
                natoms = int(header.strip())
            except ValueError:
                hint = " (has the previous frame more atom lines than its count?)" if frame else ""
                raise DataError(
                    f"line {lineno}: expected the number of atoms, got {header.strip()[:60]!r}"
                    + hint,
                    name,
                    frame,
                ) from None
            if natoms < 1:
                raise DataError(f"line {lineno}: atom count is {natoms}", name, frame)
            lines = [header]
            for k in range(natoms + 1):
                line = handle.readline()
                if line == "":
                    raise DataError(
                        f"file ends inside the frame starting at line {lineno}: "
                        f"got {max(k - 1, 0)} of {natoms} atom lines",
                        name,
                        frame,
                    )
                lines.append(line)
            yield frame, lineno, "".join(lines)
            lineno += natoms + 1
            frame += 1


def _selection(index: int | str | slice, path: Path) -> tuple[range, bool]:
    """Turn an ASE-style index into a range of frame numbers and whether it was one int."""
    if isinstance(index, str):
        parts = index.split(":")
        try:
            values = [int(p) if p.strip() else None for p in parts]
        except ValueError:
            raise DataError(f"bad frame index {index!r}", str(path)) from None
        if len(values) == 1:
            index = values[0] if values[0] is not None else slice(None)
        elif len(values) <= 3:
            index = slice(*values)
        else:
            raise DataError(f"bad frame index {index!r}", str(path))
    if isinstance(index, (int, np.integer)):
        if index >= 0:
            return range(int(index), int(index) + 1), True
        total = sum(1 for _ in _frames(path))
        if index < -total:
            raise DataError(f"frame index {index} out of range: {total} frames", str(path))
        return range(total + int(index), total + int(index) + 1), True
    if not isinstance(index, slice):
        raise DataError(f"bad frame index {index!r}", str(path))
    start, stop, step = index.start, index.stop, index.step
    if (start or 0) >= 0 and (stop is None or stop >= 0) and (step or 1) > 0:
        return range(start or 0, sys.maxsize if stop is None else stop, step or 1), False
    total = sum(1 for _ in _frames(path))
    return range(*index.indices(total)), False


def _lookup(atoms: Atoms, key: str) -> object:
    """Find ``key`` in the calculator results, atoms.info or atoms.arrays."""
    if atoms.calc is not None and key in atoms.calc.results:
        return atoms.calc.results[key]
    if key in atoms.info:
        return atoms.info[key]
    if key in atoms.arrays and key not in ("numbers", "positions"):
        return atoms.arrays[key]
    return MISSING


def _keys_present(atoms: Atoms) -> str:
    results = sorted(atoms.calc.results) if atoms.calc is not None else []
    arrays = sorted(k for k in atoms.arrays if k not in ("numbers", "positions"))
    return f"info {sorted(atoms.info)}, arrays {arrays}, calculator {results}"


def _to_configuration(
    atoms: Atoms,
    file: str,
    frame: int,
    keys: dict[str, str],
    factor: float,
    require_forces: bool,
    require_energy: bool = True,
    property_keys: dict[str, str] | None = None,
) -> Configuration:
    n = len(atoms)
    energy = _lookup(atoms, keys["energy"])
    if energy is MISSING and require_energy:
        raise DataError(
            f"missing energy key {keys['energy']!r}; keys present: {_keys_present(atoms)}",
            file,
            frame,
        )
    energy_array = None if energy is MISSING else np.asarray(energy)
    bad = energy_array is not None and energy_array.dtype.kind not in "iuf"
    if bad or (energy_array is not None and energy_array.size != 1):
        raise DataError(f"energy key {keys['energy']!r} is not a number: {energy!r}", file, frame)
    forces = _lookup(atoms, keys["forces"])
    if forces is MISSING:
        if n == 1 and energy_array is not None:
            forces = np.zeros((1, 3))  # a lone atom feels no force (translation invariance)
        elif require_forces:
            raise DataError(
                f"missing forces key {keys['forces']!r}; keys present: {_keys_present(atoms)}",
                file,
                frame,
            )
        else:
            forces = None
    if forces is not None:
        forces = forces_value(forces, keys["forces"], n, file, frame) * factor
    lookup = partial(_lookup, atoms)
    stress, virials = stress_and_virials(
        lookup, keys, factor, atoms.cell.array, atoms.pbc, file, frame
    )
    weight = atoms.info.get(keys["weight"], 1.0)
    return Configuration(
        numbers=atoms.numbers,
        positions=atoms.positions,
        cell=atoms.cell.array,
        pbc=atoms.pbc,
        energy=None if energy_array is None else float(energy_array.reshape(-1)[0]) * factor,
        forces=forces,
        stress=stress,
        virials=virials,
        config_type=str(atoms.info.get(keys["config_type"], "Default")),
        weight=weight,
        source=(file, frame),
        **molecular_labels(lookup, keys, property_keys or {}, file, frame),
    )


def _parse_frame(text: str, file: str, frame: int, lineno: int) -> Atoms:
    try:
        return ase.io.read(io.StringIO(text), format="extxyz", properties_parser=_parse_comment)
    except KeyError as exc:
        raise DataError(
            f"frame starting at line {lineno}: unknown element symbol {exc.args[0]!r}", file, frame
        ) from exc
    except Exception as exc:  # ASE raises many types; all mean a malformed frame
        raise DataError(
            f"cannot parse the frame starting at line {lineno}: {type(exc).__name__}: {exc}",
            file,
            frame,
        ) from exc


def read_extxyz(
    path: str | Path,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    virials_key: str = "virials",
    energy_unit: str = "eV",
    index: int | str | slice = ":",
    config_type_key: str = "config_type",
    weight_key: str = "config_weight",
    require_forces: bool = True,
    require_energy: bool = True,
    dipole_key: str = "dipole",
    polarizability_key: str = "polarizability",
    total_charge_key: str = "total_charge",
    property_keys: Mapping[str, str] | None = None,
) -> list[Configuration]:
    """Read labelled frames from an extended-XYZ file.

    Every key is looked up in the calculator results ASE builds for the plain names
    (``energy``, ``forces``, ``stress``), then in ``atoms.info``, then in ``atoms.arrays``.
    Stress and virials may be given as 9 values or as 6 Voigt values (xx yy zz yz xz xy);
    for a 3D-periodic cell the missing one of the two is derived with
    ``stress = -virials / volume``. Energies, forces, stress and virials are multiplied by
    the factor of ``energy_unit``; positions and cells must be in Å. A single-atom frame
    without forces gets zero forces.

    The molecular labels are optional in every frame and keep the file's units (no
    ``energy_unit`` factor): a frame without the dipole, polarizability or a property key
    gets None or leaves that property out, without the total charge key a charge of 0. A
    property key that no frame has is not an error here; the training set-up checks that a
    head has labels (:func:`tensorpot.data.statistics.label_counts`).

    Args:
        path: the file.
        energy_key: per-frame total energy.
        forces_key: per-atom forces.
        stress_key: per-frame stress (optional in the file).
        virials_key: per-frame virials (optional in the file).
        energy_unit: unit of the energy labels (see :mod:`tensorpot.data.units`).
        index: frames to read, ASE style: an int, a slice or a string such as ``":10"``.
        config_type_key: info key of the structure label (default label "Default").
        weight_key: info key of the per-structure loss weight (default 1).
        require_forces: if False, a frame without forces gets ``forces=None``.
        require_energy: if False, a frame without an energy gets ``energy=None`` (unlabelled
            structures, to predict); a key that is there must still hold a number.
        dipole_key: per-frame dipole, 3 values (ASE puts ``dipole`` among the calculator's
            results).
        polarizability_key: per-frame polarizability, 9 values (3x3 row-major) or 6 Voigt
            values ``xx yy zz yz xz xy``; it must be symmetric.
        total_charge_key: per-frame net charge in e.
        property_keys: ``{property name: key}`` of named scalar properties (one number each),
            such as ``{"U0": "U0", "gap": "gap_eV"}``.

    Returns:
        The configurations, in the order ``index`` selects them.

    Raises:
        DataError: naming the file and frame, for a missing file, an empty file, a
            malformed frame, an unknown element, a missing energy or forces key (with the
            keys that exist), a NaN/inf value, two atoms at the same position, a dipole
            without 3 values, a polarizability without 9 or 6 values or not symmetric, or a
            property or total charge that is not one number.
        ConfigError: for an unknown ``energy_unit`` or a ``property_keys`` that is not a
            mapping of names to keys.
    """
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise DataError("file not found", file)
    factor = energy_factor(energy_unit)
    properties = check_property_keys(property_keys)
    keys = {
        "energy": energy_key,
        "forces": forces_key,
        "stress": stress_key,
        "virials": virials_key,
        "config_type": config_type_key,
        "weight": weight_key,
        "dipole": dipole_key,
        "polarizability": polarizability_key,
        "total_charge": total_charge_key,
    }
    wanted, single = _selection(index, path)
    last = wanted[-1] if len(wanted) else -1
    configs: dict[int, Configuration] = {}
    n_frames = 0
    for frame, lineno, text in _frames(path):
        n_frames = frame + 1
        if frame in wanted:
            atoms = _parse_frame(text, file, frame, lineno)
            configs[frame] = _to_configuration(
                atoms, file, frame, keys, factor, require_forces, require_energy, properties
            )
        if frame >= last and wanted.step > 0:
            break
    if n_frames == 0:
        raise DataError("the file holds no frames", file)
    if single and not configs:
        raise DataError(f"frame index {index} out of range: {n_frames} frames", file)
    if factor != 1.0:
        logger.info("%s: energies in %s, multiplied by %.10g to get eV", file, energy_unit, factor)
    order = sorted(configs) if wanted.step > 0 else [k for k in wanted if k in configs]
    return [configs[k] for k in order]


def read_extxyz_atoms(path: str | Path) -> list[Atoms]:
    """Every frame of an extended-XYZ file as ASE reads it, with all its keys (info, arrays and
    the calculator's results), split and parsed as :func:`read_extxyz` does it, so a bad frame
    gets the same :class:`~tensorpot.errors.DataError`. Used to write predictions beside every
    key of the input."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", str(path))
    return [_parse_frame(text, str(path), frame, lineno) for frame, lineno, text in _frames(path)]
