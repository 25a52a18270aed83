"""ICTP: irreducible Cartesian tensor potentials (Zaverkin et al., NeurIPS 2024).

MACE-like message passing whose features are symmetric traceless Cartesian tensors, coupled by
irreducible Cartesian tensor products (ICTP spec section 3). Per layer: interaction (the
one-particle basis ``A``), product basis (``B``, correlation order nu), update
(``h = Linear(B) + self-connection``) and a readout of the scalar channels.

``freecg: true`` (off by default: the paper's ICTP) adds FreeCG's layer between the
interaction and the product basis: the channels of ``A`` are abstract edges, coupled in groups
with the atom's own features by irreducible Cartesian products and shuffled across groups
(:class:`~tensorpot.nn.abstract_edges.AbstractEdgeCoupling`); even paths by default,
pseudotensor paths with ``freecg_odd_paths``.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from tensorpot.models.base import FeatureDims, Features, Geometry, Potential
from tensorpot.models.config import OUTPUT_RANKS, PotentialConfig
from tensorpot.models.registry import ModelFamily
from tensorpot.nn.abstract_edges import AbstractEdgeCoupling, default_shift, group_layout
from tensorpot.nn.convolution import PairGraph
from tensorpot.nn.embedding import SpeciesEmbedding
from tensorpot.nn.interaction import Interaction
from tensorpot.nn.linear import RankLinear
from tensorpot.nn.product_basis import ProductBasis
from tensorpot.nn.radial import RadialEmbedding
from tensorpot.nn.readout import LinearReadout, MLPReadout
from tensorpot.tensors import compressed_harmonics, from_compressed


class ICTPConfig(PotentialConfig):
    """Hyperparameters of an ICTP model: the single home of their defaults.

    Key names follow MACE where MACE has one. The shared keys (``r_max``, ``atomic_numbers``,
    ``E0s``, ``outputs``, ``dtype``, ...) are those of :class:`PotentialConfig`. With a dipole
    (polarizability) output the last layer keeps rank 1 (rank 2) features, as MACE's dipole
    models read the l = 1 output of every layer, so ``max_L`` must be at least that rank.
    """

    model: Literal["ictp"] = "ictp"
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
    avg_num_neighbors: float = Field(1.0, gt=0)
    freecg: bool = Field(
        False, description="FreeCG's coupling of abstract edges (the channels of A) before B"
    )
    num_groups: int | None = Field(
        None, ge=1, description="G, groups of abstract edges (freecg); default C_prod / E"
    )
    num_edges_eachgroup: int | None = Field(
        None, ge=1, description="E, abstract edges per group (freecg); default 8, at most C_prod"
    )
    shuffle_shift: int | None = Field(
        None, ge=0, description="channel shift of the coupling (freecg); default G + G/2 in groups"
    )
    freecg_max_rank: int | None = Field(
        None, ge=0, le=8, description="l_max of the coupled abstract edges (freecg); default L"
    )
    freecg_odd_paths: bool | None = Field(
        None, description="pseudotensor paths too, carried back to true tensors (freecg)"
    )

    @model_validator(mode="after")
    def _check(self) -> ICTPConfig:
        self._check_freecg()
        if self.max_ell is not None and self.max_ell < self.max_L:
            raise ValueError(f"max_ell ({self.max_ell}) must be >= max_L ({self.max_L})")
        if self.output_rank > self.max_L:
            wants = [o for o in self.outputs if OUTPUT_RANKS.get(o, 0) > self.max_L]
            raise ValueError(
                f"outputs {wants} read rank-{self.output_rank} features: max_L must be >= "
                f"{self.output_rank}, got {self.max_L}"
            )
        return self

    def _check_freecg(self) -> None:
        keys = ("num_groups", "num_edges_eachgroup", "shuffle_shift", "freecg_max_rank",
                "freecg_odd_paths")  # fmt: skip
        if not self.freecg:
            given = [k for k in keys if getattr(self, k) is not None]
            if given:
                raise ValueError(f"{given} only act with freecg: true")
            return
        c, g, e = self.product_channels, self.groups, self.edges_per_group
        if g * e != c:
            raise ValueError(
                f"num_groups x num_edges_eachgroup ({g} x {e}) must be the product channels ({c})"
            )
        if self.shuffle_shift is not None and self.shuffle_shift >= c:
            raise ValueError(f"shuffle_shift must be below the product channels ({c})")
        if self.freecg_max_rank is not None and self.freecg_max_rank > self.edge_rank:
            raise ValueError(
                f"freecg_max_rank ({self.freecg_max_rank}) must be <= max_ell ({self.edge_rank})"
            )

    @property
    def edges_per_group(self) -> int:
        """E: ``num_edges_eachgroup``; by default ``C_prod / G``, or 8 (at most ``C_prod``)."""
        return group_layout(self.product_channels, self.num_groups, self.num_edges_eachgroup)[1]

    @property
    def groups(self) -> int:
        """G: ``num_groups``, ``C_prod / E`` by default."""
        return group_layout(self.product_channels, self.num_groups, self.num_edges_eachgroup)[0]

    @property
    def coupling(self) -> dict:
        """The arguments of :class:`~tensorpot.nn.abstract_edges.AbstractEdgeCoupling` but the
        ranks of ``h``."""
        g, e = self.groups, self.edges_per_group
        shift = default_shift(g, e) if self.shuffle_shift is None else self.shuffle_shift
        rank = self.edge_rank if self.freecg_max_rank is None else self.freecg_max_rank
        return {
            "num_channels": self.num_channels, "num_groups": g, "edges_per_group": e,
            "max_rank": rank, "odd": bool(self.freecg_odd_paths), "shift": shift,
        }  # fmt: skip

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


class ICTPLayer(nn.Module):
    """One message-passing layer: interaction, (with ``freecg``) the coupling of abstract edges,
    product basis, update and (for a model with an energy) the readout of the site energy."""

    def __init__(
        self, cfg: ICTPConfig, node_rank: int, out_rank: int, last: bool, readout: bool = True
    ):
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
        self.abstract_edges = None
        if cfg.freecg:
            self.abstract_edges = AbstractEdgeCoupling(node_max_rank=node_rank, **cfg.coupling)
        self.update = RankLinear(c_prod, c, out_rank)
        self.readout = None
        if readout:
            self.readout = MLPReadout(c, cfg.readout_hidden) if last else LinearReadout(c)

    def forward(
        self, h: list[Tensor], species: Tensor, harmonics: Tensor, radial: Tensor, pairs: PairGraph
    ) -> tuple[list[Tensor], Tensor | None]:
        """Features ``h[l] [N, C, 2l+1]`` in and out, and the layer's site energy ``[N]``."""
        a, sc = self.interaction(h, species, harmonics, radial, pairs)
        if self.abstract_edges is not None:
            a = self.abstract_edges(a, h)
        b = self.product(a, species)
        h = [u + s for u, s in zip(self.update(b), sc)]
        return h, None if self.readout is None else self.readout(h[0][:, :, 0])


class ICTP(Potential):
    """The ICTP model (ICTP_full, ICTP_sym or ICTP_sym+lt by ``product_basis``).

    Its features for the heads are every layer's: the scalar channels ``h[0]``, the rank-1
    channels ``h[1]`` (whose 3 coordinates are x, y, z) and the rank-2 channels ``h[2]`` as
    symmetric traceless 3x3 matrices, concatenated over the layers that have them.
    """

    #: the interaction's post-aggregation weights, the product basis and its linear (spec 4.3)
    WEIGHT_DECAY = r"^layers\.\d+\.(interaction\.post_weights|product|update)\."

    def __init__(self, config: ICTPConfig):
        super().__init__(**config.potential_arguments())
        self.config = config
        self.edge_rank = config.edge_rank
        self.embedding = SpeciesEmbedding(len(config.atomic_numbers), config.num_channels)
        self.radial = RadialEmbedding(
            config.r_max, config.num_radial_basis, config.num_cutoff_basis
        )
        layers, ranks = [], []
        for t in range(config.num_interactions):
            last = t == config.num_interactions - 1
            node_rank = 0 if t == 0 else config.max_L
            out_rank = config.output_rank if last else config.max_L
            layers.append(ICTPLayer(config, node_rank, out_rank, last, self.has_energy))
            ranks.append(out_rank)
        self.layers = nn.ModuleList(layers)
        self.feature_ranks = ranks
        c = config.num_channels
        self.build_heads(
            FeatureDims(
                scalars=c * len(ranks),
                vectors=c * sum(r >= 1 for r in ranks),
                tensors=c * sum(r >= 2 for r in ranks),
            ),
            config.head_hidden,
        )
        self.keep_features = len(self.heads) > 0

    def representation(self, geometry: Geometry) -> Features:
        pair_vectors = geometry.edge_vectors[geometry.pair_first]  # [G, 3], one per reversed pair
        pairs = PairGraph.from_edges(
            geometry.edge_index, geometry.pair_first, geometry.edge_pair, pair_vectors.dtype
        )
        lengths = torch.linalg.vector_norm(pair_vectors, dim=-1)  # [G]
        harmonics = torch.cat(compressed_harmonics(pair_vectors, self.edge_rank), dim=-1)
        radial = self.radial(lengths)  # [G, num_radial_basis]
        h = [self.embedding(geometry.species).unsqueeze(-1)]  # [N, C, 1]
        energy = torch.zeros_like(h[0][:, 0, 0]) if self.has_energy else None
        kept: list[list[Tensor]] = []
        for layer in self.layers:
            h, e = layer(h, geometry.species, harmonics, radial, pairs)
            if e is not None:
                energy = energy + e
            if self.keep_features:
                kept.append(h)
        if not self.keep_features:
            return Features(site_energy=energy)
        vectors = [f[1] for f in kept if len(f) > 1]  # [N, C, 3], Cartesian x, y, z
        tensors = [from_compressed(f[2], 2) for f in kept if len(f) > 2]  # [N, C, 3, 3]
        return Features(
            site_energy=energy,
            scalars=torch.cat([f[0][:, :, 0] for f in kept], dim=1),
            vectors=torch.cat(vectors, dim=1) if vectors else None,
            tensors=torch.cat(tensors, dim=1) if tensors else None,
        )


FAMILY = ModelFamily(name="ictp", config=ICTPConfig, model=ICTP)
