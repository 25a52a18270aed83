"""Unit factors against closed-form definitions of the units."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units as ase_units

from tensorpot.data.units import (
    convert_energy,
    convert_length,
    energy_factor,
    force_factor,
    length_factor,
)
from tensorpot.errors import ConfigError

# CODATA 2018 exact SI constants: elementary charge (C) and Avogadro constant (1/mol).
E_CHARGE = 1.602176634e-19
AVOGADRO = 6.02214076e23


def test_kcal_per_mol_is_thermochemical_calorie():
    # 1 kcal/mol = 4184 J / N_A, in eV: 4184 / (e N_A). CODATA 2014 (ASE) vs 2018 differ ~1e-8.
    expected = 4184.0 / (E_CHARGE * AVOGADRO)
    assert energy_factor("kcal/mol") == pytest.approx(expected, rel=1e-7)
    assert energy_factor("kcal/mol") == pytest.approx(4184.0 / (ase_units._e * ase_units._Nav))
    # not the rounded factor used by the EGraFFBench MD17 conversion
    assert abs(energy_factor("kcal/mol") - 0.04336) > 4e-6


def test_kcal_over_kj_is_4184():
    assert energy_factor("kcal/mol") / energy_factor("kJ/mol") == pytest.approx(4.184, rel=1e-14)


def test_hartree_and_bohr_match_codata():
    # CODATA 2018: Hartree energy 27.211386245988 eV, Bohr radius 0.529177210903 Å
    assert energy_factor("Hartree") == pytest.approx(27.211386245988, rel=2e-8)
    assert length_factor("Bohr") == pytest.approx(0.529177210903, rel=1e-8)
    # 1 Hartree is about 627.5095 kcal/mol
    hartree_in_kcal = energy_factor("Hartree") / energy_factor("kcal/mol")
    assert hartree_in_kcal == pytest.approx(627.5095, abs=1e-3)


def test_mev_and_ev_and_angstrom():
    assert energy_factor("eV") == 1.0
    assert energy_factor("meV") == pytest.approx(1e-3, rel=1e-15)
    assert length_factor("Å") == 1.0
    assert length_factor("Angstrom") == 1.0


@pytest.mark.parametrize("spelling", ["kcal/mol", "KCAL/MOL", "kcal / mol", " Kcal/Mol "])
def test_unit_spellings_are_equivalent(spelling):
    assert energy_factor(spelling) == energy_factor("kcal/mol")


@pytest.mark.parametrize("spelling", ["Ha", "hartree", "Eh"])
def test_hartree_aliases(spelling):
    assert energy_factor(spelling) == energy_factor("Hartree")


def test_convert_returns_values_and_factor():
    values = np.array([1.0, -2.5, 10.0])
    converted, factor = convert_energy(values, "kJ/mol")
    np.testing.assert_allclose(converted, values * factor, rtol=0, atol=0)
    assert factor == energy_factor("kJ/mol")
    length, lfactor = convert_length(2.0, "Bohr")
    assert length == 2.0 * lfactor
    assert force_factor("Hartree", "Bohr") == pytest.approx(
        energy_factor("Hartree") / length_factor("Bohr")
    )


@pytest.mark.parametrize("bad", ["eV/atom", "calories", "", "kcal"])
def test_unknown_energy_unit_raises(bad):
    with pytest.raises(ConfigError, match="unknown energy unit"):
        energy_factor(bad)


def test_unknown_length_unit_raises():
    with pytest.raises(ConfigError, match="unknown length unit"):
        length_factor("nm")
