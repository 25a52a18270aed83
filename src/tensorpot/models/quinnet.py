"""QuinNet (Wang et al., NeurIPS 2023): ViSNet's layer with geometric terms of up to five atoms.

QuinNet spec sections 2-5. The model is :class:`~tensorpot.models.visnet.ViSNet` (embeddings,
ExpNormal basis, self-loops, energy readout, heads, periodic cells and stress) with
:class:`~tensorpot.nn.quinnet.QuinMP` layers: each atom's scalar update reads six geometric
scalars (angles, normal vectors and torsions of its own features, and normal-vector couplings
with its neighbours) instead of ViSNet's one, and the edge features two more edge terms.

The keys are :class:`~tensorpot.models.visnet.ViSNetConfig`'s, the defaults the released aspirin
hyperparameters (5 layers; the vector norm off, as QuinNet has none). The official code's defects
are fixed behind the same flags as ViSNet's, and ``faithful: true`` sets the official behaviour:

- ``smooth_vector_messages``: the vector messages and the sums of the edge terms are multiplied
  by the cutoff (without it the energy jumps when a neighbour crosses ``r_max``);
- ``max_num_neighbors``: no neighbour cap (official: the 32 nearest, itself included).

``freecg: true`` puts FreeCG's layer (the group CG of abstract edges, the channel shift and the
attention enhancer, the ViSNet family's modules) into every QuinNet layer (FreeCG spec 3.10).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tensorpot.models.registry import ModelFamily
from tensorpot.models.visnet import ViSNet, ViSNetConfig
from tensorpot.nn.quinnet import QuinMP


class QuinNetConfig(ViSNetConfig):
    """Hyperparameters of QuinNet: :class:`~tensorpot.models.visnet.ViSNetConfig`'s keys, with the
    released aspirin configuration (QuinNet spec 5) as defaults: 256 channels, 5 layers, 32
    radial functions (not trainable), 8 heads, cutoff 5 Å."""

    model: Literal["quinnet"] = "quinnet"
    num_interactions: int = Field(5, ge=1, description="QuinNet layers")


class QuinNet(ViSNet):
    """QuinNet, or QuinNet + FreeCG with ``freecg: true``: ViSNet with QuinNet's layers.

    Features for the heads as ViSNet's: the final scalars, the degree-1 part of ``v`` as
    Cartesian vectors and its degree-2 part as symmetric traceless matrices.
    """

    layer_type = QuinMP

    def __init__(self, config: QuinNetConfig):
        super().__init__(config)


FAMILY = ModelFamily(name="quinnet", config=QuinNetConfig, model=QuinNet)
