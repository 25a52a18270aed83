r"""The ICTP interaction: equivariant convolution to the one-particle basis :math:`A`.

For layer features :math:`h_v^{(l_1)}` and edge harmonics :math:`T^{(l_2)}(\hat r_{uv})`
(ICTP spec 3.4):

.. math::

    m_{uv}^{(l_3)}[p, c] = P_{l_3}^{-1/2}\, R_{uv}[p, c]\,
        (\tilde h_v^{(l_1)}[c] \otimes T^{(l_2)}(\hat r_{uv}))^{(l_3)}, \qquad
    A_u^{(l)} = \frac{1}{\bar N \sqrt{C P_l}} W^{(l)} \mathrm{vec}_{c,p}
        \Big(\sum_{v \in \mathcal N(u)} m_{uv}^{(l)}\Big)

with :math:`R_{uv} = \mathrm{MLP}(e_{uv})` one weight per channel and path, :math:`\tilde h = `
per-rank linear of :math:`h`, and :math:`\bar N` the average number of neighbours. The layer also
returns the species self-connection of :math:`h` used by the update.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tensorpot.nn.convolution import PairGraph, convolution
from tensorpot.nn.linear import RankLinear, SpeciesLinear
from tensorpot.nn.radial import RadialMLP
from tensorpot.nn.tensor_product import EdgeTensorProduct
from tensorpot.tensors import path_multiplicities, product_paths


class Interaction(nn.Module):
    """Node features ``h`` (ranks ``<= node_max_rank``) -> ``(A, self_connection)``.

    Args:
        num_channels: ``C`` of ``h`` and of the self-connection.
        num_product_channels: ``C_prod`` of ``A``.
        num_species: ``S``.
        node_max_rank: largest rank of ``h``.
        edge_max_rank: ``L``: largest rank of the edge harmonics and of ``A``.
        out_max_rank: largest rank of the self-connection output.
        num_radial_basis: width of the radial features.
        radial_mlp: hidden widths of the radial MLP.
        avg_num_neighbors: :math:`\\bar N`.
    """

    def __init__(
        self,
        num_channels: int,
        num_product_channels: int,
        num_species: int,
        node_max_rank: int,
        edge_max_rank: int,
        out_max_rank: int,
        num_radial_basis: int,
        radial_mlp: Sequence[int],
        avg_num_neighbors: float,
    ):
        super().__init__()
        self.self_connection = SpeciesLinear(
            num_channels, num_channels, num_species, node_max_rank, out_max_rank
        )
        self.pre_linear = RankLinear(num_channels, num_channels, node_max_rank)
        paths = product_paths(node_max_rank, edge_max_rank, edge_max_rank)
        counts = path_multiplicities(paths, [1] * (node_max_rank + 1), edge_max_rank)
        self.product = EdgeTensorProduct(
            paths, node_max_rank, edge_max_rank, edge_max_rank, [p**-0.5 for p in counts]
        )
        self.counts = counts  # paths per output rank
        self.num_paths = len(paths)
        self.radial = RadialMLP([num_radial_basis, *radial_mlp, len(paths) * num_channels])
        #: run the convolution by the CPU kernel (:func:`tensorpot.nn.cpu_kernel.choose`)
        self.cpu_kernel = False
        self.post_weights = nn.ParameterList(
            [nn.Parameter(torch.randn(num_channels, p, num_product_channels)) for p in counts]
        )
        self.num_channels = num_channels
        self.groups = tuple(
            (l1, tuple(spec)) for l1, spec in zip(self.product.ranks_l1, self.product.blocks)
        )
        self.post_scales = [1.0 / (avg_num_neighbors * math.sqrt(num_channels * p)) for p in counts]

    def forward(
        self,
        h: list[Tensor],
        species: Tensor,
        harmonics: Tensor,
        radial_features: Tensor,
        pairs: PairGraph,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Args: ``h[l] [N, C, 2l+1]``, ``species [N]``, and per edge pair
        (:class:`~tensorpot.nn.convolution.PairGraph`): ``harmonics [G, (L+1)^2]`` of its first
        edge (ranks concatenated) and ``radial_features [G, num_radial_basis]``. The radial MLP,
        the harmonics and their contraction with the couplings run once per pair.

        Returns: ``A[l] [N, C_prod, 2l+1]`` for ``l <= L`` and the self-connection
        ``sc[l] [N, C, 2l+1]`` for ``l <= out_max_rank``.
        """
        sc = self.self_connection(h, species)
        radial = self.radial(radial_features)  # [G, P C]
        radial = radial.view(radial.shape[0], self.num_paths, self.num_channels)
        x = self.pre_linear(h)
        blocks = convolution(
            [x[l1] for l1 in self.product.ranks_l1],
            self.product.channel_free(harmonics),
            radial,
            pairs,
            [s.to(radial.dtype) for s in self.product.reverse_signs()],
            self.groups,
            keep_messages=not self.training,  # training differentiates the backward pass
            kernel=self.cpu_kernel,
        )
        aggregated: list[list[Tensor]] = [[] for _ in self.counts]
        specs = [spec for group in self.product.blocks for spec in group]
        for block, (l3, _, _) in zip(blocks, specs):
            aggregated[l3].append(block)  # [N, 2l3+1, P, C]
        out = []
        for parts, w, post in zip(aggregated, self.post_weights, self.post_scales):
            agg = torch.cat(parts, dim=2)  # [N, 2l3+1, P_l3, C], paths in the listed order
            out.append(torch.einsum("nkpc,cpd->ndk", agg, w) * post)  # [N, C_prod, 2l+1]
        return out, sc
