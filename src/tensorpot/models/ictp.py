"""ICTP: irreducible Cartesian tensor potentials (Zaverkin et al., NeurIPS 2024).

MACE-like message passing whose features are symmetric traceless Cartesian tensors, coupled by
irreducible Cartesian tensor products (ICTP spec section 3). Per layer: interaction (the
one-particle basis ``A``), product basis (``B``, correlation order nu), update
(``h = Linear(B) + self-connection``) and a readout of the scalar channels.
"""

from __future__ import annotations

from typing import Literal, Union

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from tensorpot.models.base import Geometry, Potential
from tensorpot.models.registry import ModelFamily
from tensorpot.nn.convolution import PairGraph
from tensorpot.nn.embedding import SpeciesEmbedding
from tensorpot.nn.interaction import Interaction
from tensorpot.nn.linear import RankLinear
from tensorpot.nn.product_basis import ProductBasis
from tensorpot.nn.radial import RadialEmbedding
from tensorpot.nn.readout import LinearReadout, MLPReadout
from tensorpot.tensors import compressed_harmonics

PerSpecies = Union[float, list[float]]  # noqa: UP007 (pydantic field type)


class ICTPConfig(BaseModel):
    """Hyperparameters of an ICTP model: the single home of their defaults.

    Key names follow MACE where MACE has one. ``E0s`` is a dict ``{Z: eV}`` or a list in the
    order of ``atomic_numbers``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Literal["ictp"] = "ictp"
    r_max: float = Field(5.0, gt=0, description="cutoff radius r_c (Å)")
    num_channels: int = Field(32, ge=1, description="C, channels of the hidden features")
    max_L: int = Field(2, ge=0, le=8, description="l_max, largest rank of the hidden features")
    max_ell: int | None = Field(
        None,
        ge=0,
        le=8,
        description="L, largest rank of edge harmonics and of A (default max(3, max_L))",
    )
    correlation: int = Field(
        3, ge=1, le=8, description="nu, correlation order of the product basis"
    )
    product_basis: Literal["full", "sym", "sym+lt"] = "sym"
    num_product_channels: int | None = Field(
        None, ge=1, description="C_prod; default num_channels, or num_channels // 2 for sym+lt"
    )
    path_weights: Literal["uncoupled", "coupled"] = "uncoupled"
    num_interactions: int = Field(2, ge=1, description="T, message-passing layers")
    num_radial_basis: int = Field(8, ge=1)
    num_cutoff_basis: int = Field(5, ge=1, description="p of the polynomial envelope")
    radial_MLP: list[int] = Field(default_factory=lambda: [64, 64, 64])
    readout_hidden: int = Field(16, ge=1, description="hidden width of the last readout MLP")
    atomic_numbers: list[int] = Field(default_factory=lambda: [1, 6, 7, 8])
    E0s: dict[int, float] | list[float] | None = None
    atomic_inter_scale: PerSpecies = 1.0
    atomic_inter_shift: PerSpecies = 0.0
    avg_num_neighbors: float = Field(1.0, gt=0)
    dtype: Literal["float32", "float64"] = "float64"
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> ICTPConfig:
        zs = self.atomic_numbers
        if not zs or len(set(zs)) != len(zs) or not all(1 <= z <= 118 for z in zs):
            raise ValueError(f"atomic_numbers must be distinct elements 1..118, got {zs}")
        if self.max_ell is not None and self.max_ell < self.max_L:
            raise ValueError(f"max_ell ({self.max_ell}) must be >= max_L ({self.max_L})")
        if isinstance(self.E0s, dict) and set(self.E0s) != set(zs):
            raise ValueError(f"E0s has elements {sorted(self.E0s)}, atomic_numbers {sorted(zs)}")
        if isinstance(self.E0s, list) and len(self.E0s) != len(zs):
            raise ValueError(f"E0s has {len(self.E0s)} values for {len(zs)} atomic_numbers")
        return self

    @property
    def edge_rank(self) -> int:
        return max(3, self.max_L) if self.max_ell is None else self.max_ell

    @property
    def product_channels(self) -> int:
        if self.num_product_channels is not None:
            return self.num_product_channels
        return (
            max(1, self.num_channels // 2) if self.product_basis == "sym+lt" else self.num_channels
        )

    def e0_list(self) -> list[float] | None:
        if isinstance(self.E0s, dict):
            return [self.E0s[z] for z in self.atomic_numbers]
        return self.E0s


class ICTPLayer(nn.Module):
    """One message-passing layer: interaction, product basis, update and readout."""

    def __init__(self, cfg: ICTPConfig, node_rank: int, out_rank: int, last: bool):
        super().__init__()
        c, c_prod, s = cfg.num_channels, cfg.product_channels, len(cfg.atomic_numbers)
        self.interaction = Interaction(
            c, c_prod, s, node_rank, cfg.edge_rank, out_rank,
            cfg.num_radial_basis, cfg.radial_MLP, cfg.avg_num_neighbors,
        )  # fmt: skip
        self.product = ProductBasis(
            c_prod, s, cfg.edge_rank, out_rank, cfg.correlation,
            symmetric=cfg.product_basis != "full", coupled=cfg.path_weights == "coupled",
        )  # fmt: skip
        self.update = RankLinear(c_prod, c, out_rank)
        self.readout = MLPReadout(c, cfg.readout_hidden) if last else LinearReadout(c)

    def forward(
        self, h: list[Tensor], species: Tensor, harmonics: Tensor, radial: Tensor, pairs: PairGraph
    ) -> tuple[list[Tensor], Tensor]:
        a, sc = self.interaction(h, species, harmonics, radial, pairs)
        b = self.product(a, species)
        h = [u + s for u, s in zip(self.update(b), sc)]
        return h, self.readout(h[0][:, :, 0])


class ICTP(Potential):
    """The ICTP model (ICTP_full, ICTP_sym or ICTP_sym+lt by ``product_basis``)."""

    def __init__(self, config: ICTPConfig):
        super().__init__(
            config.atomic_numbers, config.r_max, config.e0_list(),
            config.atomic_inter_scale, config.atomic_inter_shift,
        )  # fmt: skip
        self.config = config
        self.edge_rank = config.edge_rank
        self.embedding = SpeciesEmbedding(len(config.atomic_numbers), config.num_channels)
        self.radial = RadialEmbedding(
            config.r_max, config.num_radial_basis, config.num_cutoff_basis
        )
        layers = []
        for t in range(config.num_interactions):
            last = t == config.num_interactions - 1
            node_rank = 0 if t == 0 else config.max_L
            layers.append(ICTPLayer(config, node_rank, 0 if last else config.max_L, last))
        self.layers = nn.ModuleList(layers)

    def site_energies(self, geometry: Geometry) -> Tensor:
        pair_vectors = geometry.edge_vectors[geometry.pair_first]  # [G, 3], one per reversed pair
        pairs = PairGraph.from_edges(
            geometry.edge_index, geometry.pair_first, geometry.edge_pair, pair_vectors.dtype
        )
        lengths = torch.linalg.vector_norm(pair_vectors, dim=-1)  # [G]
        harmonics = torch.cat(compressed_harmonics(pair_vectors, self.edge_rank), dim=-1)
        radial = self.radial(lengths)  # [G, num_radial_basis]
        h = [self.embedding(geometry.species).unsqueeze(-1)]  # [N, C, 1]
        energy = torch.zeros_like(h[0][:, 0, 0])
        for layer in self.layers:
            h, e = layer(h, geometry.species, harmonics, radial, pairs)
            energy = energy + e
        return energy


FAMILY = ModelFamily(name="ictp", config=ICTPConfig, model=ICTP)
