"""Unit conversion into the internal units: eV for energies and Å for lengths.

Factors come from :mod:`ase.units` (CODATA constants), never from rounded literals:
1 kcal/mol is the thermochemical calorie, ``4.184 kJ / N_A``, expressed in eV, which is
``4184 / (e N_A)`` = 0.0433641... eV. Unit names are matched without regard to case or
spaces, so ``"kcal/mol"``, ``"KCAL/MOL"`` and ``"kcal / mol"`` are the same unit.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
from ase import units as ase_units

from tensorpot.errors import ConfigError

__all__ = [
    "ENERGY_UNITS",
    "LENGTH_UNITS",
    "convert_energy",
    "convert_length",
    "energy_factor",
    "force_factor",
    "length_factor",
]

#: eV per unit, by canonical unit name.
ENERGY_UNITS: dict[str, float] = {
    "eV": 1.0,
    "meV": 1.0e-3,
    "kcal/mol": ase_units.kcal / ase_units.mol,
    "kJ/mol": ase_units.kJ / ase_units.mol,
    "Hartree": ase_units.Hartree,
}

#: Å per unit, by canonical unit name.
LENGTH_UNITS: dict[str, float] = {
    "Å": 1.0,
    "Bohr": ase_units.Bohr,
}

_ENERGY_ALIASES: dict[str, str] = {
    "ev": "eV",
    "mev": "meV",
    "kcal/mol": "kcal/mol",
    "kcalmol-1": "kcal/mol",
    "kcal_per_mol": "kcal/mol",
    "kj/mol": "kJ/mol",
    "kjmol-1": "kJ/mol",
    "kj_per_mol": "kJ/mol",
    "hartree": "Hartree",
    "ha": "Hartree",
    "eh": "Hartree",
}

_LENGTH_ALIASES: dict[str, str] = {
    "å": "Å",
    "a": "Å",
    "ang": "Å",
    "angstrom": "Å",
    "bohr": "Bohr",
    "a0": "Bohr",
}

T = TypeVar("T", float, np.ndarray)


def _canonical(unit: str, aliases: dict[str, str], kind: str) -> str:
    """Map a user spelling of a unit to its canonical name, or raise ConfigError."""
    if not isinstance(unit, str):
        raise ConfigError(f"{kind} unit must be a string, got {unit!r}")
    key = "".join(unit.split()).lower()
    if key not in aliases:
        known = sorted(set(aliases.values()))
        raise ConfigError(f"unknown {kind} unit {unit!r}; known units: {', '.join(known)}")
    return aliases[key]


def energy_factor(unit: str) -> float:
    """Return how many eV one ``unit`` is.

    Args:
        unit: one of eV, meV, kcal/mol, kJ/mol, Hartree (aliases: Ha, Eh).

    Returns:
        The factor ``f`` such that ``value_in_eV = f * value_in_unit``.

    Raises:
        ConfigError: if the unit is unknown.
    """
    return ENERGY_UNITS[_canonical(unit, _ENERGY_ALIASES, "energy")]


def length_factor(unit: str) -> float:
    """Return how many Å one ``unit`` is.

    Args:
        unit: Å (aliases: A, Ang, Angstrom) or Bohr (alias a0).

    Returns:
        The factor ``f`` such that ``value_in_Å = f * value_in_unit``.

    Raises:
        ConfigError: if the unit is unknown.
    """
    return LENGTH_UNITS[_canonical(unit, _LENGTH_ALIASES, "length")]


def force_factor(energy_unit: str, length_unit: str = "Å") -> float:
    """Return the factor from ``energy_unit / length_unit`` to eV/Å."""
    return energy_factor(energy_unit) / length_factor(length_unit)


def convert_energy(value: T, unit: str) -> tuple[T, float]:
    """Convert an energy (or an energy-valued array) into eV.

    Args:
        value: a number or array in ``unit``.
        unit: the energy unit of ``value``.

    Returns:
        ``(value_in_eV, factor)``; the factor is returned so the caller can log it.
    """
    factor = energy_factor(unit)
    return value * factor, factor


def convert_length(value: T, unit: str) -> tuple[T, float]:
    """Convert a length (or a length-valued array) into Å.

    Args:
        value: a number or array in ``unit``.
        unit: the length unit of ``value``.

    Returns:
        ``(value_in_Å, factor)``; the factor is returned so the caller can log it.
    """
    factor = length_factor(unit)
    return value * factor, factor
