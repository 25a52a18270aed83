"""Neighbour lists through vesin: molecules, periodic and mixed cells, cells below the cutoff."""

from __future__ import annotations

import numpy as np
import vesin


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """All directed pairs closer than ``cutoff``.

    Args:
        positions: ``[N, 3]`` Å.
        cell: ``[3, 3]`` Å, rows are the cell vectors (ignored where ``pbc`` is false).
        pbc: ``[3]`` bool.
        cutoff: Å.

    Returns:
        ``edge_index [2, E]`` (centre, neighbour) and ``cell_shifts [E, 3]`` (integers) such that
        ``positions[j] - positions[i] + cell_shifts @ cell`` is shorter than ``cutoff``; both
        directions of every pair, an atom's own periodic images included, sorted.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool).reshape(3)
    box = np.asarray(cell, dtype=np.float64).reshape(3, 3) if pbc.any() else np.zeros((3, 3))
    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts = calculator.compute(positions, box, [bool(p) for p in pbc], quantities="ijS")
    i, j = np.asarray(i, dtype=np.int64), np.asarray(j, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)
    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    return np.stack([i[order], j[order]]), shifts[order]
