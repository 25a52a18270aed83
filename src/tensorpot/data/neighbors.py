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

import math
import warnings

import numpy as np
import vesin

from tensorpot.errors import DataError

_DEGENERATE = 1e-8  # relative size below which a periodic cell is treated as singular
#: Above this many neighbours per atom (estimated before the list is built) a cutoff gets a
#: warning: interatomic potentials use tens to a few hundred (12 Å in water: about 700), and
#: every edge costs the model memory in proportion to its channels and ranks.
MANY_NEIGHBORS = 2000


def estimated_neighbors(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> float:
    """The number of neighbours per atom a cutoff will give, estimated without building the
    list: the structure's atom density times the cutoff sphere's volume, where the volume is
    the periodic cell's along periodic directions and the atoms' extent (plus 2 Å) along the
    others; at most the atoms of the structure times the periodic images in reach."""
    n = len(positions)
    periodic = cell[np.asarray(pbc, dtype=bool)]
    images, measure = 1.0, 1.0
    complement = np.eye(3)
    if len(periodic):
        gram = periodic @ periodic.T
        measure = math.sqrt(abs(float(np.linalg.det(gram))))  # length, area or volume
        complement = np.linalg.svd(periodic)[2][len(periodic) :]
        # the distance between lattice planes of each periodic vector, within their span
        for spacing in 1.0 / np.sqrt(np.diag(np.linalg.inv(gram))):
            images *= 2 * math.ceil(cutoff / spacing) + 1
    if len(complement):
        measure *= float(np.prod(np.ptp(positions @ complement.T, axis=0) + 2.0))
    density = n / max(measure, 1e-12)
    return min(density * 4.0 / 3.0 * math.pi * cutoff**3, n * images)


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
    per_atom = estimated_neighbors(positions, cell, pbc, cutoff)
    if per_atom > MANY_NEIGHBORS:
        warnings.warn(
            f"a cutoff of {cutoff:g} Å gives about {per_atom:,.0f} neighbours per atom in this "
            f"{len(positions)}-atom structure (interatomic potentials use tens to hundreds); the "
            "model's memory grows with the edges: is r_max meant to be this large?",
            RuntimeWarning,
            stacklevel=2,
        )

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
