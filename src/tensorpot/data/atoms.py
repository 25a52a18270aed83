"""From ``ase.Atoms`` to the graph of one structure, and from graphs to a :class:`GraphBatch`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from tensorpot.data.batch import GraphBatch
from tensorpot.data.neighbors import neighbor_list


@dataclass(frozen=True)
class AtomicGraph:
    """One structure with its neighbour list (numpy arrays; lengths Å)."""

    positions: np.ndarray  # [N, 3]
    atomic_numbers: np.ndarray  # [N]
    edge_index: np.ndarray  # [2, E]
    cell_shifts: np.ndarray  # [E, 3] integers
    cell: np.ndarray  # [3, 3], zeros when no direction is periodic
    pbc: np.ndarray  # [3] bool

    @property
    def num_atoms(self) -> int:
        return len(self.atomic_numbers)


def graph_from_arrays(
    positions: np.ndarray, numbers: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> AtomicGraph:
    """Build the graph of one structure from plain arrays."""
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    cell = np.asarray(cell, dtype=np.float64).reshape(3, 3) if pbc.any() else np.zeros((3, 3))
    positions = np.asarray(positions, dtype=np.float64)
    edge_index, shifts = neighbor_list(positions, cell, pbc, cutoff)
    return AtomicGraph(
        positions, np.asarray(numbers, dtype=np.int64), edge_index, shifts, cell, pbc
    )


def atoms_to_graph(atoms: Atoms, cutoff: float) -> AtomicGraph:
    """The graph of an ``ase.Atoms`` within ``cutoff`` (Å)."""
    return graph_from_arrays(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc, cutoff)


def collate(graphs: Sequence[AtomicGraph], dtype: torch.dtype = torch.float64) -> GraphBatch:
    """Concatenate graphs into one batch (edge indices offset by the atoms before them)."""
    counts = [g.num_atoms for g in graphs]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    edge_index = np.concatenate([g.edge_index + o for g, o in zip(graphs, offsets)], axis=1)
    return GraphBatch(
        positions=torch.as_tensor(np.concatenate([g.positions for g in graphs]), dtype=dtype),
        atomic_numbers=torch.as_tensor(np.concatenate([g.atomic_numbers for g in graphs])),
        edge_index=torch.as_tensor(edge_index, dtype=torch.long),
        cell_shifts=torch.as_tensor(np.concatenate([g.cell_shifts for g in graphs]), dtype=dtype),
        cell=torch.as_tensor(np.stack([g.cell for g in graphs]), dtype=dtype),
        pbc=torch.as_tensor(np.stack([g.pbc for g in graphs])),
        batch=torch.repeat_interleave(torch.arange(len(graphs)), torch.as_tensor(counts)),
    )
