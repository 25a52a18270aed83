"""Bond-length stability and RDFs on synthetic trajectories with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule

from tensorpot.dynamics.stability import (
    BondMonitor,
    RDFMonitor,
    RDFSettings,
    find_bonds,
    radial_distribution,
)


def test_bonds_are_those_of_the_molecule():
    ethanol = molecule("CH3CH2OH")  # C C O H(O) H H H H H
    bonds = {tuple(b) for b in find_bonds(ethanol).tolist()}
    symbols = ethanol.get_chemical_symbols()
    kinds = sorted("".join(sorted(symbols[i] + symbols[j])) for i, j in bonds)
    assert kinds == sorted(["CC", "CO", "HO"] + ["CH"] * 5)


def test_collapse_time_is_when_a_bond_breaks():
    """An O-H bond stretched by 0.1 Å per ps: its deviation passes 0.5 Å just after 5 ps."""
    start = molecule("CH3CH2OH")
    o, h = 2, 3
    direction = start.positions[h] - start.positions[o]
    direction /= np.linalg.norm(direction)
    monitor = BondMonitor(start)
    times = np.arange(0.0, 8.01, 0.25)  # ps
    for t in times:
        frame = start.copy()
        frame.positions[h] += 0.1 * t * direction
        frame.positions += 0.3 * np.sin(t)  # a rigid translation changes no bond
        monitor.update(t, frame)
    result = monitor.result()
    assert result.collapse_time == pytest.approx(5.25)  # the first sample over 0.5 Å
    assert result.worst_bond == (o, h)
    assert result.max_deviation == pytest.approx(0.8)
    assert result.num_bonds == 8


def test_a_stable_run_has_no_collapse_and_the_reference_mean_counts():
    start = molecule("CH3CH2OH")
    stretched = start.copy()
    stretched.positions[3] += 0.8 * (start.positions[3] - start.positions[2])  # O-H +0.78 Å
    monitor = BondMonitor(start, reference=[start, stretched])  # mean O-H: +0.39 Å
    monitor.update(0.0, start)
    monitor.update(1.0, stretched)
    result = monitor.result()
    assert result.collapse_time is None
    assert 0.38 < result.max_deviation < 0.40


def test_bonds_across_the_periodic_boundary_use_the_minimum_image():
    cell = np.eye(3) * 6.0
    dimer = Atoms("H2", positions=[[0.1, 3, 3], [5.84, 3, 3]], cell=cell, pbc=True)  # 0.26 Å
    assert find_bonds(dimer).tolist() == [[0, 1]]
    monitor = BondMonitor(dimer)
    moved = dimer.copy()
    moved.positions[:, 0] += 0.2  # atom 1 now at 6.04, outside the cell: still the same bond
    monitor.update(1.0, moved)
    assert monitor.result().max_deviation == pytest.approx(0.0, abs=1e-12)


def test_rdf_of_fcc_has_its_first_peak_at_the_nearest_neighbour_distance():
    copper = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
    g = radial_distribution(copper, r_max=3.0, bins=60)
    r = (np.arange(60) + 0.5) * 0.05
    peak = r[np.argmax(g["Cu-Cu"])]
    assert peak == pytest.approx(3.61 / np.sqrt(2), abs=0.05)
    assert np.allclose(g["all"], g["Cu-Cu"])
    # 12 neighbours: integral of rho g(r) 4 pi r^2 dr over the first shell
    rho = len(copper) / copper.get_volume()
    edges = np.linspace(0.0, 3.0, 61)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    assert (rho * g["Cu-Cu"] * shell).sum() == pytest.approx(12.0)


def test_rdf_of_an_ideal_gas_is_one_and_partials_are_normalised():
    rng = np.random.default_rng(0)
    gas = Atoms("H400O200", positions=rng.uniform(0, 14.0, (600, 3)), cell=[14.0] * 3, pbc=True)
    g = radial_distribution(gas, r_max=5.0, bins=10)
    for pair in ("all", "H-H", "H-O", "O-O"):
        assert g[pair][3:].mean() == pytest.approx(1.0, abs=0.08), pair


def test_rdf_collapse_is_the_end_of_the_first_window_off_the_reference():
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    rng = np.random.default_rng(1)
    settings = RDFSettings(r_max=3.0, bins=30, window=1.0, threshold=0.5)
    monitor = RDFMonitor(settings, reference=[crystal])
    for t in np.arange(0.0, 4.01, 0.25):  # ps: a crystal until 2 ps, a gas from 2.5 ps
        frame = crystal.copy()
        if t > 2.2:
            frame.positions = rng.uniform(0, 7.22, frame.positions.shape)
        monitor.update(t, frame)
    result = monitor.result(start=0.4)
    ends = [end for end, _ in result.window_errors]
    errors = [error for _, error in result.window_errors]
    assert ends == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert errors[0] < 1e-12 and errors[1] < 0.5 < errors[2]  # window [2, 3) holds gas frames
    assert result.collapse_time == pytest.approx(3.0)
    assert result.start == 0.4 and result.rdf["Cu-Cu"].shape == (30,)


def test_without_a_reference_there_is_no_rdf_criterion():
    crystal = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    monitor = RDFMonitor(RDFSettings(r_max=3.0, bins=30))
    monitor.update(0.0, crystal)
    result = monitor.result(start=None)
    assert result.window_errors == [] and result.collapse_time is None
    assert np.allclose(result.rdf["Cu-Cu"], radial_distribution(crystal, 3.0, 30)["Cu-Cu"])
