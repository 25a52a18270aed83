"""Grouping of reversed edges: by identity, never by length."""

from __future__ import annotations

import numpy as np
import torch
from ase.build import bulk

import tensorpot
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.data.pairs import edge_pairs
from tests.models.contract import crystal


def _graph(atoms, cutoff=5.0):
    return collate([atoms_to_graph(atoms, cutoff)], dtype=torch.float64)


def _groups(batch):
    return edge_pairs(batch.edge_index, batch.cell_shifts, batch.positions.shape[0])


def test_every_group_is_an_edge_and_its_reverse():
    # a perfect fcc cell: many unrelated edges have bitwise equal lengths, and must stay apart
    batch = _graph(bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2))
    first, group = _groups(batch)
    num_edges = batch.edge_index.shape[1]
    assert first.shape[0] * 2 == num_edges
    assert torch.equal(torch.bincount(group), torch.full_like(first, 2))
    assert torch.equal(group[first], torch.arange(first.shape[0]))
    centre, neighbour = batch.edge_index
    shifts = batch.cell_shifts.round().long()
    for g in range(first.shape[0]):
        a, b = torch.nonzero(group == g).flatten().tolist()
        assert (centre[a], neighbour[a]) == (neighbour[b], centre[b])
        assert torch.equal(shifts[a], -shifts[b])


def test_reversed_edges_have_bitwise_equal_lengths():
    atoms = crystal(3)  # a cell smaller than the cutoff: atoms pair with their own images
    atoms.rattle(0.05, seed=1)
    batch = _graph(atoms)
    first, group = _groups(batch)
    centre, neighbour = batch.edge_index
    shifts = batch.cell_shifts @ batch.cell[0]
    vectors = batch.positions[neighbour] - batch.positions[centre] + shifts
    lengths = torch.linalg.vector_norm(vectors, dim=-1)
    assert torch.equal(lengths[first][group], lengths)


def test_an_edge_without_its_reverse_is_its_own_group():
    batch = _graph(crystal(1))
    keep = torch.ones(batch.edge_index.shape[1], dtype=torch.bool)
    keep[0] = False
    first, group = edge_pairs(batch.edge_index[:, keep], batch.cell_shifts[keep], 3)
    counts = torch.bincount(group)
    assert int((counts == 1).sum()) == 1 and int((counts == 2).sum()) == first.shape[0] - 1
    assert edge_pairs(batch.edge_index[:, :0], batch.cell_shifts[:0], 3)[0].numel() == 0


def test_model_is_unchanged_by_evaluating_the_radial_part_per_pair():
    """Energies, forces and stress with the radial MLP per pair equal those per edge."""
    model = tensorpot.build_model(
        {"model": "ictp", "num_channels": 4, "max_L": 1, "correlation": 2,
         "atomic_numbers": [1, 6, 8], "r_max": 4.0, "seed": 5}
    )  # fmt: skip
    atoms = crystal(2)
    atoms.rattle(0.1, seed=2)
    batch = _graph(atoms, 4.0)
    paired = model(batch, compute_forces=True, compute_stress=True)

    ids = torch.arange(batch.edge_index.shape[1])  # every edge a pair of its own
    assert len(batch.pair_first) < len(ids)  # the batch did pair them
    single = model(batch._replace(pair_first=ids, edge_pair=ids), compute_forces=True,
                   compute_stress=True)  # fmt: skip
    for name in ("energy", "forces", "stress", "virials"):
        a, b = getattr(paired, name), getattr(single, name)
        np.testing.assert_allclose(a.detach(), b.detach(), rtol=1e-12, atol=1e-12)


def test_the_batch_carries_the_pairing_and_the_model_reads_it(monkeypatch):
    """collate pairs the edges when the batch is built; the forward pass does not pair again
    (nothing read back from the device for it)."""
    model = tensorpot.build_model(
        {"model": "ictp", "num_channels": 4, "max_L": 1, "correlation": 2,
         "atomic_numbers": [1, 6, 8], "r_max": 4.0, "seed": 5}
    )  # fmt: skip
    batch = _graph(crystal(2), 4.0)
    first, group = edge_pairs(batch.edge_index, batch.cell_shifts, len(batch.positions))
    assert torch.equal(batch.pair_first, first) and torch.equal(batch.edge_pair, group)
    expected = model(batch, compute_forces=True)

    def refuse(*args):
        raise AssertionError("edge_pairs called in the forward pass")

    monkeypatch.setattr("tensorpot.models.base.edge_pairs", refuse)
    again = model(batch, compute_forces=True)
    assert torch.equal(again.energy, expected.energy)
