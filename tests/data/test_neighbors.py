"""The vesin-based neighbour list against ASE's, and the convention it promises."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list as ase_neighbor_list

from tensorpot.data.neighbors import neighbor_list
from tensorpot.errors import DataError

PBCS = [(True, True, True), (True, False, True), (False, False, True), (True, True, False)]


def random_system(seed: int, small: bool, pbc=(True, True, True)):
    """Random triclinic cell, atoms partly outside it; small cells are shorter than 3 Å."""
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(1.6, 3.0, 3) if small else rng.uniform(4.0, 7.0, 3)
    cell = np.diag(lengths) + rng.uniform(-0.25, 0.25, (3, 3)) * lengths.min()
    n = int(rng.integers(1, 6 if small else 12))
    positions = rng.uniform(-0.3, 1.3, (n, 3)) @ cell
    cutoff = float(rng.uniform(2.5, 4.5))
    return positions, cell, np.array(pbc), cutoff


def as_set(i, j, shifts) -> set:
    return set(zip(np.asarray(i).tolist(), np.asarray(j).tolist(), map(tuple, shifts.tolist())))


def ase_set(positions, cell, pbc, cutoff) -> set:
    atoms = Atoms(numbers=np.ones(len(positions)), positions=positions, cell=cell, pbc=pbc)
    i, j, shifts = ase_neighbor_list("ijS", atoms, cutoff)
    return as_set(i, j, shifts)


def ours_set(positions, cell, pbc, cutoff) -> set:
    edge_index, shifts = neighbor_list(positions, cell, pbc, cutoff)
    return as_set(edge_index[0], edge_index[1], shifts)


@pytest.mark.parametrize("pbc", PBCS)
@pytest.mark.parametrize("small", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_matches_ase_periodic(seed, small, pbc):
    positions, cell, pbc, cutoff = random_system(seed, small, pbc)
    ours = ours_set(positions, cell, pbc, cutoff)
    assert ours == ase_set(positions, cell, pbc, cutoff)
    assert len(ours) > 0


@pytest.mark.parametrize("seed", range(4))
def test_matches_ase_molecule(seed):
    rng = np.random.default_rng(seed)
    positions = rng.normal(size=(15, 3)) * 2.0
    ours = ours_set(positions, np.zeros((3, 3)), np.zeros(3, bool), 3.0)
    assert ours == ase_set(positions, np.zeros((3, 3)), False, 3.0)
    assert all(s == (0, 0, 0) for _, _, s in ours)
    # A cell given with no periodic direction changes nothing.
    assert ours == ours_set(positions, np.eye(3) * 1.3, np.zeros(3, bool), 3.0)


@pytest.mark.parametrize("pbc", PBCS)
@pytest.mark.parametrize("seed", range(3))
def test_convention(seed, pbc):
    """Every vector is shorter than the cutoff, the list is full, sorted and has no self pair."""
    positions, cell, pbc, cutoff = random_system(seed, small=True, pbc=pbc)
    edge_index, shifts = neighbor_list(positions, cell, pbc, cutoff)
    assert edge_index.dtype == np.int64 and shifts.dtype == np.int64
    assert edge_index.shape == (2, len(shifts)) and shifts.shape[1] == 3
    i, j = edge_index
    vectors = positions[j] - positions[i] + shifts @ cell
    assert (np.linalg.norm(vectors, axis=1) < cutoff).all()
    assert not ((i == j) & (shifts == 0).all(axis=1)).any()
    assert (shifts[:, ~pbc] == 0).all()
    edges = as_set(i, j, shifts)
    assert len(edges) == len(shifts)  # no duplicates
    assert edges == {(b, a, tuple(-np.asarray(s))) for a, b, s in edges}
    keys = np.column_stack([i, j, shifts])
    assert [tuple(k) for k in keys] == sorted(tuple(k) for k in keys)
    again = neighbor_list(positions, cell, pbc, cutoff)
    assert np.array_equal(again[0], edge_index) and np.array_equal(again[1], shifts)


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True)])
def test_one_atom_sees_its_own_images(pbc):
    """One atom in a 1 Å cube: its neighbours are the lattice points within the cutoff."""
    cutoff, pbc = 2.1, np.array(pbc)
    edge_index, shifts = neighbor_list(np.zeros((1, 3)), np.eye(3), pbc, cutoff)
    ranges = [range(-3, 4) if p else [0] for p in pbc]
    expected = {s for s in itertools.product(*ranges) if 0 < np.linalg.norm(s) < cutoff}
    assert (edge_index == 0).all()
    assert set(map(tuple, shifts.tolist())) == expected


def test_non_periodic_cell_vectors_are_ignored():
    positions, cell, pbc, cutoff = random_system(3, small=True, pbc=(True, False, True))
    junk = cell.copy()
    junk[1] = [0.0, 0.0, 0.0]
    a = neighbor_list(positions, cell, pbc, cutoff)
    b = neighbor_list(positions, junk, pbc, cutoff)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_cutoff_is_strict():
    positions = np.array([[0.0, 0.0, 0.0], [1.5, 0.0, 0.0]])
    none = np.zeros(3, bool)
    assert neighbor_list(positions, np.zeros((3, 3)), none, 1.5)[0].shape == (2, 0)
    assert neighbor_list(positions, np.zeros((3, 3)), none, 1.5 + 1e-9)[0].shape == (2, 2)


def test_empty_and_isolated():
    edge_index, shifts = neighbor_list(np.zeros((0, 3)), np.zeros((3, 3)), np.zeros(3, bool), 2.0)
    assert edge_index.shape == (2, 0) and shifts.shape == (0, 3)
    far = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    edge_index, shifts = neighbor_list(far, np.zeros((3, 3)), np.zeros(3, bool), 2.0)
    assert edge_index.shape == (2, 0) and edge_index.dtype == np.int64


@pytest.mark.parametrize(
    "positions, cell, pbc, cutoff, words",
    [
        (np.zeros((2, 3)), np.zeros((3, 3)), [True, True, True], 2.0, "zero cell vector"),
        (np.zeros((2, 3)), np.diag([2.0, 2.0, 0.0]), [True, True, True], 2.0, "zero cell"),
        (np.zeros((2, 3)), [[2, 0, 0], [4, 0, 0], [0, 0, 2]], [True] * 3, 2.0, "dependent"),
        (np.zeros((2, 3)), np.eye(3), [True] * 3, 0.0, "cutoff"),
        (np.full((2, 3), np.nan), np.eye(3), [True] * 3, 2.0, "NaN"),
        (np.zeros((2, 2)), np.eye(3), [True] * 3, 2.0, "shape"),
    ],
)
def test_bad_input_is_a_clear_error(positions, cell, pbc, cutoff, words):
    with pytest.raises(DataError, match=words):
        neighbor_list(np.asarray(positions), np.asarray(cell, float), np.asarray(pbc), cutoff)


def test_a_cutoff_that_explodes_the_list_is_warned_about():
    """Two atoms in a 3 Å cell with a 20 Å cutoff: about 2,500 neighbours per atom."""
    import warnings

    positions, cell = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]), np.eye(3) * 3.0
    with pytest.warns(RuntimeWarning, match="neighbours per atom"):
        neighbor_list(positions, cell, np.ones(3, bool), 20.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        neighbor_list(positions, cell, np.ones(3, bool), 5.0)


@pytest.mark.parametrize("pbc", [(True, True, True), (True, True, False), (False, False, False)])
def test_estimated_neighbours_are_close_to_the_count(pbc):
    from tensorpot.data.neighbors import estimated_neighbors

    rng = np.random.default_rng(1)
    cell = np.diag([30.0, 30.0, 12.0])
    positions = rng.uniform(0, 1, (1500, 3)) * np.diag(cell)
    pbc = np.array(pbc)
    edges, _ = neighbor_list(positions, cell, pbc, 5.0)
    counted = edges.shape[1] / len(positions)
    assert estimated_neighbors(positions, cell * pbc[:, None], pbc, 5.0) == pytest.approx(
        counted, rel=0.35
    )
