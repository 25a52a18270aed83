"""From ase.Atoms to graphs, and collating graphs into one batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from tensorpot.data.atoms import AtomicGraph, atoms_to_graph, collate
from tensorpot.data.neighbors import neighbor_list

CUTOFF = 3.0


def molecule(seed: int, n: int) -> Atoms:
    rng = np.random.default_rng(seed)
    return Atoms(numbers=rng.integers(1, 9, n), positions=rng.normal(size=(n, 3)) * 1.5)


def crystal(seed: int, pbc=(True, True, True)) -> Atoms:
    rng = np.random.default_rng(seed)
    cell = np.diag([2.5, 2.8, 3.2]) + rng.uniform(-0.3, 0.3, (3, 3))
    return Atoms(
        numbers=rng.integers(1, 9, 3), scaled_positions=rng.random((3, 3)), cell=cell, pbc=pbc
    )


def edge_vectors(graph: AtomicGraph) -> np.ndarray:
    i, j = graph.edge_index
    return graph.positions[j] - graph.positions[i] + graph.cell_shifts @ graph.cell


def test_molecule_graph():
    atoms = molecule(0, 8)
    atoms.cell = np.eye(3) * 20.0  # a box without periodicity is still a molecule
    graph = atoms_to_graph(atoms, CUTOFF)
    assert np.array_equal(graph.cell, np.zeros((3, 3)))
    assert not graph.pbc.any() and graph.pbc.dtype == bool
    assert np.array_equal(graph.positions, atoms.positions)
    assert np.array_equal(graph.atomic_numbers, atoms.numbers)
    assert graph.atomic_numbers.dtype == np.int64
    expected = neighbor_list(atoms.positions, np.zeros((3, 3)), np.zeros(3, bool), CUTOFF)
    assert np.array_equal(graph.edge_index, expected[0])
    assert (graph.cell_shifts == 0).all()


@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, False)])
def test_periodic_graph_keeps_the_cell(pbc):
    atoms = crystal(1, pbc)
    graph = atoms_to_graph(atoms, CUTOFF)
    assert np.array_equal(graph.cell, atoms.cell.array)
    assert np.array_equal(graph.pbc, np.array(pbc))
    assert (np.linalg.norm(edge_vectors(graph), axis=1) < CUTOFF).all()
    assert (graph.cell_shifts != 0).any()  # the cell is smaller than the cutoff


def test_graph_does_not_alias_atoms():
    atoms = crystal(2)
    graph = atoms_to_graph(atoms, CUTOFF)
    before = graph.positions.copy()
    atoms.positions += 1.0
    atoms.cell[0, 0] += 1.0
    assert np.array_equal(graph.positions, before)
    assert not np.array_equal(graph.cell, atoms.cell.array)


def test_collate_offsets_and_batch_vector():
    structures = [molecule(0, 5), crystal(1), Atoms("H"), molecule(3, 7), crystal(4, (1, 0, 1))]
    graphs = [atoms_to_graph(a, CUTOFF) for a in structures]
    batch = collate(graphs)
    counts = [g.num_atoms for g in graphs]
    assert batch.num_graphs == len(graphs)
    assert batch.batch.tolist() == sum(([b] * n for b, n in enumerate(counts)), [])
    assert batch.positions.shape == (sum(counts), 3)
    assert batch.edge_index.shape == (2, sum(g.num_edges for g in graphs))
    assert batch.edge_index.dtype == torch.long and batch.atomic_numbers.dtype == torch.long
    # Every edge stays inside its graph.
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[batch.edge_index[1]])
    atom0, edge0 = 0, 0
    for b, g in enumerate(graphs):
        edges = batch.edge_index[:, edge0 : edge0 + g.num_edges]
        assert np.array_equal(edges.numpy() - atom0, g.edge_index)
        assert np.allclose(batch.positions[atom0 : atom0 + g.num_atoms].numpy(), g.positions)
        assert torch.equal(batch.cell[b], torch.as_tensor(g.cell))
        assert batch.pbc[b].tolist() == g.pbc.tolist()
        atom0, edge0 = atom0 + g.num_atoms, edge0 + g.num_edges
    # The batch's edge vectors (GraphBatch convention) equal those of each graph.
    i, j = batch.edge_index
    shifts = torch.einsum("ei,eij->ej", batch.cell_shifts, batch.cell[batch.batch[i]])
    vectors = batch.positions[j] - batch.positions[i] + shifts
    assert np.allclose(vectors.numpy(), np.concatenate([edge_vectors(g) for g in graphs]))


def test_collate_dtype_and_errors():
    graphs = [atoms_to_graph(crystal(5), CUTOFF), atoms_to_graph(molecule(6, 4), CUTOFF)]
    batch = collate(graphs, dtype=torch.float32)
    for t in (batch.positions, batch.cell_shifts, batch.cell):
        assert t.dtype == torch.float32
    assert batch.pbc.dtype == torch.bool
    assert torch.equal(batch.cell_shifts, batch.cell_shifts.round())
    with pytest.raises(ValueError, match="at least one"):
        collate([])
    with pytest.raises(ValueError, match="floating"):
        collate(graphs, dtype=torch.int64)
