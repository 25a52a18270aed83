"""Radius graphs of one structure, built on vesin.

The list is full (every pair appears as ``i -> j`` and ``j -> i``) and holds periodic images:
in a cell smaller than the cutoff an atom sees its own images (``i == j`` with a non-zero shift)
and sees a neighbour several times. Edge ``e`` has the vector
``positions[j] - positions[i] + cell_shifts[e] @ cell`` with norm strictly below the cutoff.

vesin handles molecules (no periodic direction), mixed boundary conditions and small triclinic
cells; it refuses a box that is not invertible along a periodic direction, which is checked here
first so the message says what is wrong. The cell vectors of non-periodic directions are never
used (their shift is always zero), so they are zeroed before the call.
"""

from __future__ import annotations

import numpy as np
import vesin

from tensorpot.errors import DataError

_DEGENERATE = 1e-8  # relative size below which a periodic cell is treated as singular


def neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> tuple[np.ndarray, np.ndarray]:
    """Full neighbour list of one structure, sorted by centre, neighbour and shift.

    Args:
        positions: atom positions ``[N, 3]`` in Å.
        cell: cell vectors as rows ``[3, 3]`` in Å (anything, e.g. zeros, for a molecule).
        pbc: periodic directions ``[3]`` bool.
        cutoff: radius in Å; pairs at a distance ``>= cutoff`` are left out.

    Returns:
        ``(edge_index, cell_shifts)``: ``edge_index [2, E]`` int64 holds (centre, neighbour) and
        ``cell_shifts [E, 3]`` int64 the integer multiples of the cell vectors to add to the
        neighbour. Self-pairs with a zero shift are never included.

    Raises:
        DataError: if the inputs have the wrong shape, are not finite, the cutoff is not positive,
            or the periodic cell vectors are degenerate.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    cell = np.array(cell, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    _check(positions, cell, pbc, cutoff)
    cell[~pbc] = 0.0
    if len(positions) == 0:
        return np.zeros((2, 0), dtype=np.int64), np.zeros((0, 3), dtype=np.int64)

    calculator = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts = calculator.compute(positions, cell, [bool(p) for p in pbc], quantities="ijS")
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    shifts = np.asarray(shifts, dtype=np.int64).reshape(-1, 3)

    # Enforce the documented convention exactly (strict cutoff, no zero-shift self pairs).
    vectors = positions[j] - positions[i] + shifts @ cell
    keep = np.linalg.norm(vectors, axis=1) < cutoff
    keep &= ~((i == j) & ~shifts.any(axis=1))
    i, j, shifts = i[keep], j[keep], shifts[keep]

    order = np.lexsort((shifts[:, 2], shifts[:, 1], shifts[:, 0], j, i))
    edge_index = np.stack([i[order], j[order]])
    return edge_index, np.ascontiguousarray(shifts[order])


def _check(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float) -> None:
    """Raise :class:`DataError` for inputs vesin would reject or misread."""
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise DataError(f"positions must have shape [N, 3], got {list(positions.shape)}")
    if cell.shape != (3, 3):
        raise DataError(f"cell must have shape [3, 3], got {list(cell.shape)}")
    if pbc.shape != (3,):
        raise DataError(f"pbc must have shape [3], got {list(pbc.shape)}")
    if not (np.isfinite(cutoff) and cutoff > 0):
        raise DataError(f"the cutoff must be a positive number, got {cutoff}")
    if not np.isfinite(positions).all():
        raise DataError("positions contain NaN or infinite values")
    if not np.isfinite(cell[pbc]).all():
        raise DataError("the cell contains NaN or infinite values")
    periodic = cell[pbc]
    if len(periodic) == 0:
        return
    lengths = np.linalg.norm(periodic, axis=1)
    if (lengths == 0).any():
        raise DataError(f"a periodic direction has a zero cell vector (pbc={pbc.tolist()})")
    # The periodic vectors must be linearly independent: singular values relative to lengths.
    singular = np.linalg.svd(periodic / lengths[:, None], compute_uv=False)
    if singular.min() < _DEGENERATE:
        raise DataError(
            f"the periodic cell vectors are linearly dependent (pbc={pbc.tolist()}, "
            f"cell={cell.tolist()})"
        )
