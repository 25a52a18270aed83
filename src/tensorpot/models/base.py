"""What every model family shares: a representation in, energies, forces, stress and tensors out.

A family subclasses :class:`Potential` and implements either :meth:`Potential.site_energies`
(the learned part of an energy-only model, eV per atom before scale and shift) or
:meth:`Potential.representation`, which returns the per-atom :class:`Features` that the output
heads read: the family's own site energy, invariant scalars, and rank-1 and rank-2 Cartesian
features. The base class maps atomic numbers to species indices and owns the heads:

- energy: ``E_u = scale_Z * eps_u + shift_Z + E0_Z``, summed per structure, with forces
  ``F = -dE/dx`` and stress ``sigma = (1/V) dE/d(strain)`` by autograd (ICTP spec 3.8);
- dipole, polarizability and named scalar properties (:mod:`tensorpot.nn.heads`), chosen by
  the config's ``outputs``.

Reference energies and totals are float64 whatever the model's dtype: a float32 total of a
27-atom molecule (about -16,000 eV) is quantised at about 2 meV, the size of the errors a good
potential makes. The learned part runs in the model's dtype, and so do forces and stress.

A structure, or an atom, with no neighbour within ``r_max`` is valid input: its atoms get the
site energy of their bare embedding and zero force.

The forward pass reads the batch's precomputed edge pairing (``GraphBatch.pair_first`` and
``edge_pair``, built with the batch) and makes no host synchronisation on the way, so that it
can be exported and compiled.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from tensorpot.data.batch import GraphBatch
from tensorpot.data.pairs import edge_pairs
from tensorpot.nn.heads import DipoleHead, PolarizabilityHead, PropertyHead


class Predictions(NamedTuple):
    """Outputs of a :class:`Potential` for a batch of ``B`` structures and ``N`` atoms; an
    output the model does not have (or was not asked for) is None."""

    energy: Tensor | None  # [B] eV, float64
    node_energy: Tensor | None  # [N] eV, float64
    forces: Tensor | None = None  # [N, 3] eV/Å
    stress: Tensor | None = None  # [B, 3, 3] eV/Å³ (zero for structures without a cell)
    virials: Tensor | None = None  # [B, 3, 3] eV, virial W = -dE/d(strain)
    dipole: Tensor | None = None  # [B, 3], units of the training labels
    polarizability: Tensor | None = None  # [B, 3, 3], units of the training labels
    properties: dict[str, Tensor] | None = None  # {name: [B]}, units of the labels

    def detached(self) -> Predictions:
        """The same predictions cut from the autograd graph."""
        return self.map(lambda t: t.detach())

    def map(self, fn) -> Predictions:
        """``fn`` applied to every tensor (inside ``properties`` too)."""
        values = [None if t is None else fn(t) for t in self[:7]]
        props = None if self.properties is None else {k: fn(v) for k, v in self.properties.items()}
        return Predictions(*values, props)


class Features(NamedTuple):
    """What a family's representation gives the heads, per atom (any may be None).

    Rank-1 features are Cartesian 3-vectors, rank-2 features symmetric traceless 3x3 matrices
    (a family storing them in ``2l + 1`` coordinates converts with
    :func:`tensorpot.tensors.from_compressed`).
    """

    site_energy: Tensor | None = None  # [N], the learned site energy eps_u
    scalars: Tensor | None = None  # [N, S] invariant
    vectors: Tensor | None = None  # [N, V, 3]
    tensors: Tensor | None = None  # [N, T, 3, 3]


class FeatureDims(NamedTuple):
    """How many scalar, rank-1 and rank-2 features per atom a representation gives."""

    scalars: int = 0
    vectors: int = 0
    tensors: int = 0


class Geometry(NamedTuple):
    """Edge geometry derived from a batch: what the representation reads."""

    species: Tensor  # [N] long, index into the model's atomic_numbers
    edge_vectors: Tensor  # [E, 3] Å, neighbour minus centre
    edge_index: Tensor  # [2, E] long
    batch: Tensor  # [N] long
    num_graphs: int
    pair_first: Tensor  # [G] long, one edge of each pair of reversed edges (data.pairs)
    edge_pair: Tensor  # [E] long, the pair of every edge: f(r[pair_first])[edge_pair] == f(r)


class Potential(nn.Module):
    """Base class of all models: species mapping, the energy head (scale, shift, E0s, forces,
    stress) and the other heads.

    A family builds its own modules first, then calls :meth:`build_heads` with the sizes of its
    features (an energy-only model has no other head), so an energy-only model's parameters
    do not depend on the heads.

    Args:
        atomic_numbers: the elements the model knows, in the order of its species index.
        r_max: cutoff radius (Å).
        E0s: reference energy per element (eV), in the order of ``atomic_numbers``.
        scale: per-species scale of the learned site energy (one value or one per element).
        shift: per-species shift of the learned site energy (one value or one per element).
        outputs: the outputs, as in :class:`tensorpot.models.config.PotentialConfig`.
    """

    #: a regular expression matching the names of the parameters that get weight decay
    WEIGHT_DECAY: ClassVar[str | None] = None

    def __init__(
        self,
        atomic_numbers: Sequence[int],
        r_max: float,
        E0s: Sequence[float] | None = None,
        scale: float | Sequence[float] = 1.0,
        shift: float | Sequence[float] = 0.0,
        outputs: Sequence[object] = ("energy",),
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
        self.outputs = tuple(outputs)
        self.has_energy = "energy" in self.outputs
        self.heads = nn.ModuleDict()

    def build_heads(self, dims: FeatureDims, hidden: int = 16) -> None:
        """Create the heads of every output but the energy from the representation's sizes."""
        for output in self.outputs:
            if output == "dipole":
                self.heads["dipole"] = DipoleHead(dims.scalars, dims.vectors, hidden)
            elif output == "polarizability":
                self.heads["polarizability"] = PolarizabilityHead(
                    dims.scalars, dims.tensors, hidden
                )
            elif output != "energy":  # a PropertyOutput
                self.heads[f"property:{output.property}"] = PropertyHead(
                    dims.scalars, output.reduction, output.shift, output.scale, hidden
                )

    @property
    def extensive_properties(self) -> frozenset[str]:
        """The names of the property outputs summed over atoms (their errors and losses are
        also taken per atom)."""
        return frozenset(
            o.property for o in self.outputs if not isinstance(o, str) and o.reduction == "sum"
        )

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
        """Species index of every atom; raises ``ValueError`` for an element the model lacks
        (checked in eager mode only: the check reads a value back from the device, which a
        compiled or traced graph, whose tensors are fake, cannot)."""
        species = self.species_table[atomic_numbers]
        traced = torch.compiler.is_compiling() or isinstance(atomic_numbers, FakeTensor)
        if not traced and bool((species < 0).any()):
            unknown = sorted(set(atomic_numbers[species < 0].tolist()))
            raise ValueError(f"the model knows elements {list(self.atomic_numbers)}, not {unknown}")
        return species

    def site_energies(self, geometry: Geometry) -> Tensor:
        """The learned site energies ``eps_u`` [N] (before scale and shift)."""
        raise NotImplementedError

    def representation(self, geometry: Geometry) -> Features:
        """The per-atom features the heads read; by default an energy-only model's site
        energies (:meth:`site_energies`)."""
        return Features(site_energy=self.site_energies(geometry))

    def forward(
        self, batch: GraphBatch, compute_forces: bool = True, compute_stress: bool = False
    ) -> Predictions:
        """Every output of the model for ``batch``; forces and stress only with an energy."""
        compute_forces = compute_forces and self.has_energy
        compute_stress = compute_stress and self.has_energy
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
        pair_first, edge_pair = batch.pair_first, batch.edge_pair
        if pair_first is None or edge_pair is None:  # a batch made without the pairing
            pair_first, edge_pair = edge_pairs(batch.edge_index, batch.cell_shifts, len(species))
        geometry = Geometry(
            species, vectors, batch.edge_index, batch.batch, num_graphs, pair_first, edge_pair
        )
        features = self.representation(geometry)
        out = {}
        if self.has_energy:
            out = self._energy(features.site_energy, species, batch, positions, strain,
                               compute_forces, compute_stress)  # fmt: skip
        properties = {}
        for name, head in self.heads.items():
            if name == "dipole":
                out["dipole"] = head(
                    features.scalars, features.vectors, positions, batch.batch, num_graphs
                )
            elif name == "polarizability":
                out["polarizability"] = head(
                    features.scalars, features.tensors, batch.batch, num_graphs
                )
            else:
                properties[name.removeprefix("property:")] = head(
                    features.scalars, batch.batch, num_graphs
                )
        return Predictions(
            out.get("energy"), out.get("node_energy"), out.get("forces"), out.get("stress"),
            out.get("virials"), out.get("dipole"), out.get("polarizability"),
            properties or None,
        )  # fmt: skip

    def _energy(
        self,
        eps: Tensor,
        species: Tensor,
        batch: GraphBatch,
        positions: Tensor,
        strain: Tensor,
        compute_forces: bool,
        compute_stress: bool,
    ) -> dict[str, Tensor]:
        """The energy head: totals (float64), and forces and stress by autograd."""
        num_graphs = strain.shape[0]
        site = self.scale[species] * eps + self.shift[species]  # model dtype
        node_energy = site.to(torch.float64) + self.E0s[species]  # [N] float64
        energy = torch.zeros(num_graphs, dtype=torch.float64, device=node_energy.device)
        energy = energy.index_add(0, batch.batch, node_energy)
        out = {"energy": energy, "node_energy": node_energy}
        if compute_forces or compute_stress:
            inputs = [positions] if not compute_stress else [positions, strain]
            grads = torch.autograd.grad(
                [energy.sum()], inputs, create_graph=self.training, allow_unused=True
            )
            if compute_forces:
                g = grads[0]
                out["forces"] = -g if g is not None else torch.zeros_like(positions)
            if compute_stress:
                g = grads[1]
                dE_dstrain = g if g is not None else torch.zeros_like(strain)
                volume = torch.linalg.det(batch.cell).abs()
                volume = torch.where(volume > 0, volume, torch.ones_like(volume))
                out["stress"] = dE_dstrain / volume[:, None, None]
                out["virials"] = -dE_dstrain
        return out


def _per_species(value: float | Sequence[float], num_species: int) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.repeat(num_species)
    if t.numel() != num_species:
        raise ValueError(f"expected 1 or {num_species} values, got {t.numel()}")
    return t
