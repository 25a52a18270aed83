"""ViSNet (Wang et al., Nat. Commun. 2024), and FreeCG (Shao et al., ICLR 2025) on top of it.

ViSNet as the FreeCG code's backbone has it (FreeCG spec section 2): atom and neighbour
embeddings, an ExpNormal radial basis with a cosine cutoff, degree-1 and degree-2 vector
features, ViS-MP layers with runtime geometry and edge updates, and the gated equivariant
energy readout. ``freecg: true`` (the ``freecg`` family) turns on FreeCG's layer (spec 3): the
aggregated vector messages are abstract edges, coupled in groups with the atom's own features by
CG on the parity-allowed paths, shuffled by a channel shift, and an attention enhancer joins
the attention logits.

The official code's defects are fixed by default, each behind a flag whose other value is
the official behaviour; ``faithful: true`` sets them all to it:

- ``smooth_vector_messages``: the vector messages are multiplied by the cutoff, so that the
  energy and forces are continuous when a neighbour crosses ``r_max`` (spec 3.9);
- ``max_num_neighbors``: no neighbour cap (the official graph keeps the 32 nearest, itself
  included: a discontinuity and a symmetry break when an atom has more neighbours);
- the channel shift ``G + G/2`` is rounded to whole groups (the official one splits groups
  when ``E`` does not divide it).

Periodic cells, stress and virials come with the shared energy head. Every atom has a self-loop
edge (length 0, no direction), as in the official graph.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from tensorpot.models.base import FeatureDims, Features, Geometry, Potential
from tensorpot.models.config import PotentialConfig
from tensorpot.models.registry import ModelFamily
from tensorpot.nn.visnet import (
    EdgeEmbedding,
    EquivariantScalar,
    ExpNormalBasis,
    GroupCG,
    NeighborEmbedding,
    VectorNorm,
    ViSMP,
    cosine_cutoff,
)
from tensorpot.tensors.spherical import degree2_matrices, spherical_harmonics_12

#: the keys only FreeCG's layer reads
FREECG_KEYS = ("num_groups", "num_edges_eachgroup", "shuffle_shift", "attention_enhancer")
#: the official code's behaviour, set by ``faithful: true``
FAITHFUL = {"smooth_vector_messages": False, "max_num_neighbors": 32}


class ViSNetConfig(PotentialConfig):
    """Hyperparameters of ViSNet and FreeCG: the single home of their defaults.

    The defaults are the released FreeCG rMD17 configuration (FreeCG spec 4.1): 256 channels,
    9 layers, 32 radial functions, 8 heads, 32 groups of 8 abstract edges. Keys shared with ICTP
    keep ICTP's names (``num_channels``, ``num_interactions``, ``num_radial_basis``, ``r_max``);
    the others are the official code's.
    """

    model: Literal["visnet"] = "visnet"
    num_channels: int = Field(256, ge=2, description="F, hidden width")
    num_interactions: int = Field(9, ge=1, description="ViS-MP layers")
    num_radial_basis: int = Field(32, ge=1, description="K, ExpNormal radial functions")
    num_heads: int = Field(8, ge=1, description="H, attention heads")
    trainable_rbf: bool = False
    vecnorm_type: Literal["none", "max_min", "rms"] = Field(
        "none",
        description="vector norm before each layer; max_min (ViSNet's QM9 setting) is scale "
        "invariant per atom, so forces jump at r_max with it: not for MD",
    )
    trainable_vecnorm: bool = False
    freecg: bool = Field(False, description="FreeCG's layer (the freecg family)")
    num_groups: int | None = Field(
        None, ge=1, description="G, groups of abstract edges (FreeCG); default F / E"
    )
    num_edges_eachgroup: int | None = Field(
        None, ge=1, description="E, abstract edges per group (FreeCG); default 8"
    )
    shuffle_shift: int | None = Field(
        None,
        ge=0,
        description="channel shift of the CG output; default G + G/2 in whole groups (>= 1)",
    )
    attention_enhancer: bool | None = Field(None, description="FreeCG's enhancer; default on")
    smooth_vector_messages: bool = True
    max_num_neighbors: int | None = Field(
        None, ge=1, description="keep the nearest this many edges per atom, itself included"
    )
    faithful: bool = Field(False, description="every flag as the official code has it")

    @model_validator(mode="before")
    @classmethod
    def _faithful(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("faithful"):
            return data
        for key, value in FAITHFUL.items():
            if key in data and data[key] != value:
                raise ValueError(f"faithful: true sets {key} to {value}, got {data[key]!r}")
        return {**data, **FAITHFUL}

    @model_validator(mode="after")
    def _check(self) -> ViSNetConfig:
        f = self.num_channels
        if f % self.num_heads:
            raise ValueError(f"num_channels ({f}) must be divisible by num_heads")
        if not self.freecg:
            given = [k for k in FREECG_KEYS if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given} only act with freecg: true")
            return self
        g, e = self.groups, self.edges_per_group
        if g * e != f:
            raise ValueError(f"num_groups x num_edges_eachgroup ({g} x {e}) must be num_channels")
        if self.shuffle_shift is not None and self.shuffle_shift >= f:
            raise ValueError(f"shuffle_shift must be below num_channels ({f})")
        return self

    @property
    def edges_per_group(self) -> int:
        """E: ``num_edges_eachgroup``, 8 by default (or all channels when fewer)."""
        if self.num_edges_eachgroup is not None:
            return self.num_edges_eachgroup
        if self.num_groups is not None:
            return self.num_channels // self.num_groups
        return min(8, self.num_channels)

    @property
    def groups(self) -> int:
        """G: ``num_groups``, ``F / E`` by default."""
        return (
            self.num_groups
            if self.num_groups is not None
            else self.num_channels // self.edges_per_group
        )

    @property
    def enhancer(self) -> bool:
        """Whether the attention enhancer is on (FreeCG's default)."""
        return self.freecg and self.attention_enhancer is not False

    @property
    def channel_shift(self) -> int:
        """The shift of the CG output (0 without FreeCG)."""
        if not self.freecg:
            return 0
        if self.shuffle_shift is not None:
            return self.shuffle_shift
        shift = self.groups + self.groups // 2
        if self.faithful:
            return shift
        e = self.edges_per_group  # whole groups, at least one when there are several
        return (max(shift - shift % e, e) if self.groups > 1 else 0) % self.num_channels


def nearest_edges(centre: Tensor, lengths: Tensor, num_atoms: int, cap: int) -> Tensor:
    """Indices of the edges kept when every atom keeps its ``cap`` nearest, itself included
    (``cap - 1`` real neighbours), in their original order."""
    order = torch.argsort(lengths, stable=True)
    order = order[torch.argsort(centre[order], stable=True)]
    counts = torch.zeros(num_atoms, dtype=torch.long, device=centre.device)
    counts.index_add_(0, centre, torch.ones_like(centre))
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order), device=centre.device) - starts[centre[order]]
    return torch.sort(order[rank < cap - 1]).values


class ViSNet(Potential):
    """ViSNet, or FreeCG with ``freecg: true``.

    Features for the heads: the final scalars ``x [N, F]``, the degree-1 part of ``v`` as
    ``F`` Cartesian vectors and its degree-2 part as ``F`` symmetric traceless matrices.
    """

    #: The message-passing layer (a subclass of :class:`ViSMP` with its constructor).
    layer_type: type[ViSMP] = ViSMP

    def __init__(self, config: ViSNetConfig):
        super().__init__(**config.potential_arguments())
        self.config = config
        f, k, s = config.num_channels, config.num_radial_basis, len(config.atomic_numbers)
        self.embedding = nn.Embedding(s, f)
        self.rbf = ExpNormalBasis(config.r_max, k, config.trainable_rbf)
        self.neighbor_embedding = NeighborEmbedding(s, f, k)
        self.edge_embedding = EdgeEmbedding(k, f)
        self.layers = nn.ModuleList(
            self.layer_type(
                f,
                config.num_heads,
                config.r_max,
                last=t == config.num_interactions - 1,
                vecnorm=VectorNorm(f, config.vecnorm_type, config.trainable_vecnorm),
                enhancer=config.enhancer,
                group_cg=(
                    GroupCG(config.groups, config.edges_per_group, config.channel_shift)
                    if config.freecg
                    else None
                ),
                smooth=config.smooth_vector_messages,
            )
            for t in range(config.num_interactions)
        )
        self.out_norm = nn.LayerNorm(f)
        self.vec_out_norm = VectorNorm(f, config.vecnorm_type, config.trainable_vecnorm)
        self.readout = EquivariantScalar(f) if self.has_energy else None
        self.build_heads(FeatureDims(scalars=f, vectors=f, tensors=f), config.head_hidden)
        self.register_buffer("degree2", degree2_matrices(), persistent=False)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        self.degree2 = degree2_matrices().to(device=self.degree2.device, dtype=self.degree2.dtype)
        return self

    def representation(self, geometry: Geometry) -> Features:
        species, vectors = geometry.species, geometry.edge_vectors
        centre, neighbour = geometry.edge_index[0], geometry.edge_index[1]
        n = species.shape[0]
        lengths = torch.linalg.vector_norm(vectors, dim=-1)
        cap = self.config.max_num_neighbors
        if cap is not None:
            kept = nearest_edges(centre, lengths, n, cap)
            centre, neighbour, vectors, lengths = (
                centre[kept], neighbour[kept], vectors[kept], lengths[kept]
            )  # fmt: skip
        harmonics = spherical_harmonics_12(vectors / lengths.unsqueeze(-1))
        rbf = self.rbf(lengths)
        x = self.embedding(species)
        x = self.neighbor_embedding(
            x, species, centre, neighbour, rbf, cosine_cutoff(lengths, self.r_max)
        )
        # every atom's self-loop: length 0, no direction
        loops = torch.arange(n, device=centre.device)
        zeros = lengths.new_zeros(n)
        centre, neighbour = torch.cat([centre, loops]), torch.cat([neighbour, loops])
        lengths = torch.cat([lengths, zeros])
        harmonics = torch.cat([harmonics, harmonics.new_zeros(n, 8)])
        rbf = torch.cat([rbf, self.rbf(zeros)])
        f = self.edge_embedding(x, centre, neighbour, rbf)
        v = x.new_zeros(n, 8, x.shape[1])
        for layer in self.layers:
            dx, dv, df = layer(x, v, f, centre, neighbour, lengths, harmonics)
            x, v = x + dx, v + dv
            if df is not None:
                f = f + df
        x = self.out_norm(x)
        v = self.vec_out_norm(v)
        energy = self.readout(x, v) if self.readout is not None else None
        if not self.heads:
            return Features(site_energy=energy)
        return Features(
            site_energy=energy,
            scalars=x,
            vectors=v[:, :3].transpose(1, 2),  # [N, F, 3]
            tensors=torch.einsum("nmf,mab->nfab", v[:, 3:], self.degree2),  # [N, F, 3, 3]
        )


FAMILY = ModelFamily(name="visnet", config=ViSNetConfig, model=ViSNet)
