r"""The ICTP product basis :math:`B` of correlation order :math:`\nu` (ICTP spec 3.5).

.. math::

    T_1 = A, \qquad T_k = (T_{k-1} \otimes A) \text{ over all even paths}, \qquad
    B = \sum_{k=1}^{\nu} B_k,

with every path kept in its own slot and a species-dependent path summation per rank:

- uncoupled: :math:`B_k^{(l)}[c] = \frac{1}{P_l}\sum_p w^{(k,l)}[z_u, c, p]\, T_k^{(l)}[c, p]`;
- coupled: :math:`B_k^{(l)}[c'] = \frac{1}{P_l\sqrt{C}}\sum_{c,p} w^{(k,l)}[z_u, c, p, c']\,
  T_k^{(l)}[c, p]`.

Intermediate steps keep ranks ``<= max_rank``; the last step produces ranks ``<= out_max_rank``.
With ``symmetric`` the first step :math:`A \otimes A` keeps only ``l1 >= l2`` (ICTP_sym).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tensorpot.nn.tensor_product import NodeTensorProduct
from tensorpot.tensors import product_paths


class PathSummation(nn.Module):
    """Species-dependent sum over path slots, ``[N, C, P, 2l+1] -> [N, C', 2l+1]`` per rank."""

    def __init__(
        self, num_channels: int, num_species: int, multiplicities: list[int], coupled: bool
    ):
        super().__init__()
        self.coupled = coupled
        shape = (num_channels,) if coupled else ()
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.randn(num_species, num_channels, p, *shape))
                for p in multiplicities
            ]
        )
        extra = math.sqrt(num_channels) if coupled else 1.0
        self.scales = [1.0 / (p * extra) for p in multiplicities]

    def gathered(self, species: Tensor) -> list[Tensor]:
        """Uncoupled weights of every node, scaled: ``[N, C, P_l]`` per rank."""
        return [w[species] * scale for w, scale in zip(self.weights, self.scales)]

    def forward(self, t: list[Tensor], species: Tensor) -> list[Tensor]:
        out = []
        for t_l, w, scale in zip(t, self.weights, self.scales):
            if self.coupled:
                out.append(torch.einsum("ncpm,ncpd->ndm", t_l, w[species]) * scale)
            else:
                out.append(torch.einsum("ncpm,ncp->ncm", t_l, w[species]) * scale)
        return out


class ProductBasis(nn.Module):
    """``A[l] [N, C, 2l+1]`` (ranks ``<= max_rank``) -> ``B[l] [N, C, 2l+1]``.

    Args:
        num_channels: ``C`` (the product channels, ``C_prod``).
        num_species: ``S``.
        max_rank: ``L``, largest rank of ``A`` and of the intermediate products.
        out_max_rank: largest rank of ``B``.
        correlation: :math:`\\nu \\ge 1`.
        symmetric: drop the mirrored paths of the first step (ICTP_sym).
        coupled: coupled path weights (mix channels and paths).
    """

    def __init__(
        self,
        num_channels: int,
        num_species: int,
        max_rank: int,
        out_max_rank: int,
        correlation: int,
        symmetric: bool = False,
        coupled: bool = False,
    ):
        super().__init__()
        if correlation < 1:
            raise ValueError(f"correlation must be >= 1, got {correlation}")
        self.out_max_rank = out_max_rank
        counts = [1] * (max_rank + 1)
        steps, sums = (
            [],
            [PathSummation(num_channels, num_species, counts[: out_max_rank + 1], coupled)],
        )
        for k in range(2, correlation + 1):
            target = max_rank if k < correlation else out_max_rank
            paths = product_paths(max_rank, max_rank, target, symmetric=symmetric and k == 2)
            step = NodeTensorProduct(paths, counts, max_rank, target)
            counts = step.out_multiplicities
            steps.append(step)
            sums.append(
                PathSummation(num_channels, num_species, counts[: out_max_rank + 1], coupled)
            )
        self.steps = nn.ModuleList(steps)
        self.sums = nn.ModuleList(sums)
        self.multiplicities = counts

    def forward(self, a: list[Tensor], species: Tensor) -> list[Tensor]:
        t = [a_l.unsqueeze(2) for a_l in a]  # T_1 = A, one slot per rank
        a_flat = torch.cat(a, dim=-1)  # [N, C, (L+1)^2]
        basis = self.sums[0](t[: self.out_max_rank + 1], species)
        for k, (step, summation) in enumerate(zip(self.steps, self.sums[1:])):
            if k == len(self.steps) - 1 and not summation.coupled:
                # last step: fold the path weights in, never materialise T_nu
                b_k = step.weighted(t, a_flat, summation.gathered(species))
            else:
                t = step(t, a_flat)
                b_k = summation(t[: self.out_max_rank + 1], species)
            basis = [b + c for b, c in zip(basis, b_k)]
        return basis
