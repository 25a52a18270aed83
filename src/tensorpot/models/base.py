"""What every model family shares: site energies in, energies, forces and stress out.

A family subclasses :class:`Potential` and implements :meth:`Potential.site_energies`
(the learned part, eV per atom before scale and shift). The base class maps atomic numbers to
species indices, applies ``E_u = scale_Z * eps_u + shift_Z + E0_Z``, sums per structure and takes
forces ``F = -dE/dx`` and stress ``sigma = (1/V) dE/d(strain)`` by autograd (ICTP spec 3.8).

Reference energies and totals are float64 whatever the model's dtype: a float32 total of a
27-atom molecule (about -16,000 eV) is quantised at about 2 meV, the size of the errors a good
potential makes. The learned part runs in the model's dtype, and so do forces and stress.

A structure, or an atom, with no neighbour within ``r_max`` is valid input: its atoms get the
site energy of their bare embedding and zero force.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from tensorpot.data.batch import GraphBatch
from tensorpot.data.pairs import edge_pairs


class Predictions(NamedTuple):
    """Outputs of a :class:`Potential` for a batch of ``B`` structures and ``N`` atoms."""

    energy: Tensor  # [B] eV, float64
    node_energy: Tensor  # [N] eV, float64
    forces: Tensor | None = None  # [N, 3] eV/Å
    stress: Tensor | None = None  # [B, 3, 3] eV/Å³ (zero for structures without a cell)
    virials: Tensor | None = None  # [B, 3, 3] eV, virial W = -dE/d(strain)


class Geometry(NamedTuple):
    """Edge geometry derived from a batch: what the site-energy function reads."""

    species: Tensor  # [N] long, index into the model's atomic_numbers
    edge_vectors: Tensor  # [E, 3] Å, neighbour minus centre
    edge_index: Tensor  # [2, E] long
    batch: Tensor  # [N] long
    num_graphs: int
    pair_first: Tensor  # [G] long, one edge of each pair of reversed edges (data.pairs)
    edge_pair: Tensor  # [E] long, the pair of every edge: f(r[pair_first])[edge_pair] == f(r)


class Potential(nn.Module):
    """Base class of all models: species mapping, scale/shift/E0s, forces and stress.

    Args:
        atomic_numbers: the elements the model knows, in the order of its species index.
        r_max: cutoff radius (Å).
        E0s: reference energy per element (eV), in the order of ``atomic_numbers``.
        scale: per-species scale of the learned site energy (one value or one per element).
        shift: per-species shift of the learned site energy (one value or one per element).
    """

    def __init__(
        self,
        atomic_numbers: Sequence[int],
        r_max: float,
        E0s: Sequence[float] | None = None,
        scale: float | Sequence[float] = 1.0,
        shift: float | Sequence[float] = 0.0,
    ):
        super().__init__()
        num_species = len(atomic_numbers)
        table = torch.full((119,), -1, dtype=torch.long)
        table[torch.as_tensor(list(atomic_numbers), dtype=torch.long)] = torch.arange(num_species)
        self.register_buffer("species_table", table, persistent=False)
        self.atomic_numbers = tuple(int(z) for z in atomic_numbers)
        self.r_max = float(r_max)
        e0 = [0.0] * num_species if E0s is None else [float(e) for e in E0s]
        self.register_buffer("E0s", torch.tensor(e0, dtype=torch.float64))
        self.register_buffer("scale", _per_species(scale, num_species))
        self.register_buffer("shift", _per_species(shift, num_species))

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the learned part (inputs are cast to it); energies are float64."""
        return self.scale.dtype

    def _apply(self, fn, recurse=True):
        """Move and cast as ``nn.Module`` does, but keep ``E0s`` in float64 (it may move)."""
        e0s = self.E0s
        super()._apply(fn, recurse)
        self.E0s = e0s.to(device=self.E0s.device, dtype=torch.float64)
        return self

    @property
    def device(self) -> torch.device:
        return self.E0s.device

    def species_of(self, atomic_numbers: Tensor) -> Tensor:
        """Species index of every atom; raises ``ValueError`` for an element the model lacks."""
        species = self.species_table[atomic_numbers]
        if bool((species < 0).any()):
            unknown = sorted(set(atomic_numbers[species < 0].tolist()))
            raise ValueError(f"the model knows elements {list(self.atomic_numbers)}, not {unknown}")
        return species

    def site_energies(self, geometry: Geometry) -> Tensor:
        """The learned site energies ``eps_u`` [N] (before scale and shift)."""
        raise NotImplementedError

    def forward(
        self, batch: GraphBatch, compute_forces: bool = True, compute_stress: bool = False
    ) -> Predictions:
        positions = batch.positions
        num_graphs = batch.cell.shape[0]
        cell = batch.cell
        strain = torch.zeros(num_graphs, 3, 3, dtype=positions.dtype, device=positions.device)
        if compute_forces and not positions.requires_grad:
            positions = positions.requires_grad_(True)
        if compute_stress:
            strain.requires_grad_(True)
            sym = 0.5 * (strain + strain.transpose(1, 2))
            positions = positions + torch.einsum("ni,nij->nj", positions, sym[batch.batch])
            cell = cell + torch.bmm(cell, sym)
        centre, neighbour = batch.edge_index[0], batch.edge_index[1]
        shifts = torch.einsum("ei,eij->ej", batch.cell_shifts, cell[batch.batch[centre]])
        vectors = positions[neighbour] - positions[centre] + shifts  # [E, 3]
        species = self.species_of(batch.atomic_numbers)
        pair_first, edge_pair = edge_pairs(batch.edge_index, batch.cell_shifts, len(species))
        geometry = Geometry(
            species, vectors, batch.edge_index, batch.batch, num_graphs, pair_first, edge_pair
        )
        eps = self.site_energies(geometry)  # [N]
        site = self.scale[species] * eps + self.shift[species]  # model dtype
        node_energy = site.to(torch.float64) + self.E0s[species]  # [N] float64
        energy = torch.zeros(num_graphs, dtype=torch.float64, device=node_energy.device)
        energy = energy.index_add(0, batch.batch, node_energy)
        forces = stress = virials = None
        if compute_forces or compute_stress:
            inputs = [positions] if not compute_stress else [positions, strain]
            grads = torch.autograd.grad(
                [energy.sum()], inputs, create_graph=self.training, allow_unused=True
            )
            if compute_forces:
                g = grads[0]
                forces = -g if g is not None else torch.zeros_like(positions)
            if compute_stress:
                g = grads[1]
                dE_dstrain = g if g is not None else torch.zeros_like(strain)
                volume = torch.linalg.det(batch.cell).abs()
                volume = torch.where(volume > 0, volume, torch.ones_like(volume))
                stress = dE_dstrain / volume[:, None, None]
                virials = -dE_dstrain
        return Predictions(energy, node_energy, forces, stress, virials)


def _per_species(value: float | Sequence[float], num_species: int) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.repeat(num_species)
    if t.numel() != num_species:
        raise ValueError(f"expected 1 or {num_species} values, got {t.numel()}")
    return t
