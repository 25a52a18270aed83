"""The one data structure the models read: a batch of atomic graphs.

A batch is a :class:`GraphBatch` (inputs only). Labels travel separately in
:class:`Targets`, so the model never sees them and the calculator never builds them.
Units: Å for lengths, eV for energies; molecular labels keep the data's units.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from tensorpot.data.configuration import LABELS, PROPERTY_PREFIX


class GraphBatch(NamedTuple):
    """Inputs of a batch of ``B`` structures with ``N`` atoms and ``E`` directed edges.

    The edge ``e`` points from centre ``i = edge_index[0, e]`` to neighbour
    ``j = edge_index[1, e]``; its vector is
    ``positions[j] - positions[i] + cell_shifts[e] @ cell[batch[i]]``.

    ``pair_first`` and ``edge_pair`` group every edge with its reverse
    (:func:`tensorpot.data.pairs.edge_pairs`); :func:`tensorpot.data.atoms.collate` computes
    them when the batch is built, so that the model's forward pass needs no host
    synchronisation for them.

    ``total_charge`` is an input, not a label: a head that predicts atomic charges (the
    dipole's) makes them sum to it. None means neutral structures.
    """

    positions: Tensor  # [N, 3] Å
    atomic_numbers: Tensor  # [N] long
    edge_index: Tensor  # [2, E] long: (centre, neighbour)
    cell_shifts: Tensor  # [E, 3] integer multiples of the cell vectors (stored as float)
    cell: Tensor  # [B, 3, 3] Å, rows are the cell vectors (zeros for molecules)
    pbc: Tensor  # [B, 3] bool
    batch: Tensor  # [N] long: structure index of every atom
    total_charge: Tensor | None = None  # [B] float64, e
    pair_first: Tensor | None = None  # [G] long: one edge of each pair of reversed edges
    edge_pair: Tensor | None = None  # [E] long: the pair of every edge (data.pairs.edge_pairs)

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
            total_charge=None if self.total_charge is None else self.total_charge.to(device),
            pair_first=None if self.pair_first is None else self.pair_first.to(device),
            edge_pair=None if self.edge_pair is None else self.edge_pair.to(device),
        )


class TensorDict(dict[str, Tensor]):
    """A ``{name: tensor}`` dict with the ``.to`` of a tensor, so code that moves every
    field of :class:`Targets` with ``t.to(device)`` moves these too."""

    def to(self, *args, **kwargs) -> TensorDict:
        """A new TensorDict with ``tensor.to(*args, **kwargs)`` of every value."""
        return TensorDict({name: value.to(*args, **kwargs) for name, value in self.items()})


class Targets(NamedTuple):
    """Labels of a batch of ``B`` structures with ``N`` atoms (any may be missing).

    Energies in eV, forces eV/Å, stress eV/Å³, virials eV; the molecular labels in the units
    of the data (dipole, polarizability, properties) and e (total charge).

    A label is present when at least one structure of the batch has it; the structures
    without it hold zeros there, and ``masks[name]`` (bool ``[B]``) says which structures
    count. :func:`tensorpot.data.dataset.collate_samples` gives a mask for every present
    label, all True when every structure has it; its names are those of
    :data:`tensorpot.data.configuration.LABELS` and ``"property:<name>"``. The force mask is
    per structure too: ``masks["forces"][batch]`` selects the atoms. Targets built by hand
    may leave ``masks`` None, meaning every structure is labelled (see :meth:`mask`).
    """

    energy: Tensor | None = None  # [B] float64
    forces: Tensor | None = None  # [N, 3]
    stress: Tensor | None = None  # [B, 3, 3]
    virials: Tensor | None = None  # [B, 3, 3]
    dipole: Tensor | None = None  # [B, 3]
    polarizability: Tensor | None = None  # [B, 3, 3]
    properties: TensorDict | None = None  # {name: [B]}
    total_charge: Tensor | None = None  # [B] float64, zeros where not given
    masks: TensorDict | None = None  # {label name: bool [B]}

    def label(self, name: str) -> Tensor | None:
        """The tensor of label ``name`` (``"energy"``, ..., ``"property:<name>"``), or None."""
        if name.startswith(PROPERTY_PREFIX):
            return (self.properties or {}).get(name[len(PROPERTY_PREFIX) :])
        if name not in LABELS:
            raise KeyError(f"unknown label {name!r}; labels: {list(LABELS)} or 'property:<name>'")
        return getattr(self, name)

    def mask(self, name: str, num_graphs: int) -> Tensor | None:
        """Bool ``[B]`` mask of the structures labelled with ``name``; None if none is.

        Without a mask for a present label (Targets built by hand) every structure counts.
        """
        label = self.label(name)
        if label is None:
            return None
        if self.masks is not None and name in self.masks:
            return self.masks[name]
        return torch.ones(num_graphs, dtype=torch.bool, device=label.device)
