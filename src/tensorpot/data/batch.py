"""The one data structure the models read: a batch of atomic graphs.

A batch is a :class:`GraphBatch` (inputs only). Labels travel separately in
:class:`Targets`, so the model never sees them and the calculator never builds them.
Units: Å for lengths, eV for energies.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class GraphBatch(NamedTuple):
    """Inputs of a batch of ``B`` structures with ``N`` atoms and ``E`` directed edges.

    The edge ``e`` points from centre ``i = edge_index[0, e]`` to neighbour
    ``j = edge_index[1, e]``; its vector is
    ``positions[j] - positions[i] + cell_shifts[e] @ cell[batch[i]]``.
    """

    positions: Tensor  # [N, 3] Å
    atomic_numbers: Tensor  # [N] long
    edge_index: Tensor  # [2, E] long: (centre, neighbour)
    cell_shifts: Tensor  # [E, 3] integer multiples of the cell vectors (stored as float)
    cell: Tensor  # [B, 3, 3] Å, rows are the cell vectors (zeros for molecules)
    pbc: Tensor  # [B, 3] bool
    batch: Tensor  # [N] long: structure index of every atom

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """Move to ``device`` and cast the floating fields to ``dtype`` (the one cast point)."""
        return GraphBatch(
            positions=self.positions.to(device=device, dtype=dtype),
            atomic_numbers=self.atomic_numbers.to(device=device),
            edge_index=self.edge_index.to(device=device),
            cell_shifts=self.cell_shifts.to(device=device, dtype=dtype),
            cell=self.cell.to(device=device, dtype=dtype),
            pbc=self.pbc.to(device=device),
            batch=self.batch.to(device=device),
        )


class Targets(NamedTuple):
    """Labels of a batch (any may be missing). Energies in eV, forces eV/Å, stress eV/Å³."""

    energy: Tensor | None = None  # [B]
    forces: Tensor | None = None  # [N, 3]
    stress: Tensor | None = None  # [B, 3, 3]
    virials: Tensor | None = None  # [B, 3, 3]
