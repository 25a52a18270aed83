"""From ``ase.Atoms`` to the graph of one structure, and from graphs to a :class:`GraphBatch`.

An :class:`AtomicGraph` holds numpy arrays (float64 positions, int64 indices); :func:`collate`
is the only place they become tensors, in the dtype the model asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms

from tensorpot.data.batch import GraphBatch
from tensorpot.data.neighbors import neighbor_list
from tensorpot.data.pairs import edge_pairs
from tensorpot.errors import DataError


@dataclass(frozen=True)
class AtomicGraph:
    """One structure with its neighbour list (numpy arrays; lengths in Å).

    Attributes:
        positions: atom positions ``[N, 3]`` float64.
        atomic_numbers: element of every atom ``[N]`` int64.
        edge_index: (centre, neighbour) of every directed edge ``[2, E]`` int64.
        cell_shifts: integer multiples of the cell vectors added to the neighbour ``[E, 3]``
            int64.
        cell: cell vectors as rows ``[3, 3]`` float64, zeros when no direction is periodic.
        pbc: periodic directions ``[3]`` bool.
    """

    positions: np.ndarray
    atomic_numbers: np.ndarray
    edge_index: np.ndarray
    cell_shifts: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray

    @property
    def num_atoms(self) -> int:
        """Number of atoms ``N``."""
        return len(self.atomic_numbers)

    @property
    def num_edges(self) -> int:
        """Number of directed edges ``E``."""
        return self.edge_index.shape[1]


def graph_from_arrays(
    positions: np.ndarray,
    numbers: np.ndarray,
    cell: np.ndarray,
    pbc: np.ndarray,
    cutoff: float,
) -> AtomicGraph:
    """Build the graph of one structure from plain arrays (copied, never aliased).

    Args:
        positions: atom positions ``[N, 3]`` in Å.
        numbers: atomic numbers ``[N]``.
        cell: cell vectors as rows ``[3, 3]`` in Å; replaced by zeros if ``pbc`` is all False.
        pbc: periodic directions ``[3]`` bool.
        cutoff: neighbour-list radius in Å.

    Returns:
        The :class:`AtomicGraph` with every pair closer than ``cutoff``.

    Raises:
        DataError: if the shapes disagree or the neighbour list cannot be built.
    """
    positions = np.array(positions, dtype=np.float64)
    numbers = np.array(numbers, dtype=np.int64).reshape(-1)
    pbc = np.array(pbc, dtype=bool).reshape(3)
    cell = np.array(cell, dtype=np.float64).reshape(3, 3) if pbc.any() else np.zeros((3, 3))
    if positions.ndim != 2 or positions.shape != (len(numbers), 3):
        raise DataError(
            f"positions have shape {list(positions.shape)} but there are {len(numbers)} atoms"
        )
    edge_index, shifts = neighbor_list(positions, cell, pbc, cutoff)
    return AtomicGraph(positions, numbers, edge_index, shifts, cell, pbc)


def atoms_to_graph(atoms: Atoms, cutoff: float) -> AtomicGraph:
    """The graph of an ``ase.Atoms`` within ``cutoff`` (Å).

    A structure without any periodic direction is a molecule: its cell is stored as zeros.
    With any periodic direction the real cell is kept.
    """
    return graph_from_arrays(atoms.positions, atoms.numbers, atoms.cell.array, atoms.pbc, cutoff)


def collate(graphs: Sequence[AtomicGraph], dtype: torch.dtype = torch.float64) -> GraphBatch:
    """Concatenate graphs into one :class:`GraphBatch` on the CPU.

    Edge indices of graph ``b`` are offset by the number of atoms in graphs ``0..b-1``, and
    ``batch[n]`` is the index of the graph atom ``n`` came from.

    Args:
        graphs: ``B >= 1`` graphs with ``N_b`` atoms and ``E_b`` edges each.
        dtype: floating dtype of positions, cell shifts and cells.

    Returns:
        A batch with ``N = sum N_b`` atoms and ``E = sum E_b`` edges: positions ``[N, 3]``,
        atomic_numbers ``[N]``, edge_index ``[2, E]``, cell_shifts ``[E, 3]``, cell
        ``[B, 3, 3]``, pbc ``[B, 3]``, batch ``[N]``, and the pairing of reversed edges
        (``pair_first [G]``, ``edge_pair [E]``).

    Raises:
        ValueError: if ``graphs`` is empty or ``dtype`` is not a floating dtype.
    """
    if len(graphs) == 0:
        raise ValueError("collate needs at least one graph")
    if not dtype.is_floating_point:
        raise ValueError(f"collate needs a floating dtype, got {dtype}")
    counts = torch.tensor([g.num_atoms for g in graphs], dtype=torch.long)
    offsets = torch.cumsum(counts, dim=0) - counts  # [B] atoms before each graph
    edge_index = torch.cat(
        [torch.as_tensor(g.edge_index, dtype=torch.long) + o for g, o in zip(graphs, offsets)],
        dim=1,
    )
    cell_shifts = torch.cat([torch.as_tensor(g.cell_shifts, dtype=dtype) for g in graphs])
    num_atoms = int(counts.sum())
    pair_first, edge_pair = edge_pairs(edge_index, cell_shifts, num_atoms)
    return GraphBatch(
        positions=torch.cat([torch.as_tensor(g.positions, dtype=dtype) for g in graphs]),
        atomic_numbers=torch.cat(
            [torch.as_tensor(g.atomic_numbers, dtype=torch.long) for g in graphs]
        ),
        edge_index=edge_index,
        cell_shifts=cell_shifts,
        cell=torch.stack([torch.as_tensor(g.cell, dtype=dtype) for g in graphs]),
        pbc=torch.stack([torch.as_tensor(g.pbc, dtype=torch.bool) for g in graphs]),
        batch=torch.repeat_interleave(torch.arange(len(graphs)), counts),
        pair_first=pair_first,
        edge_pair=edge_pair,
    )
