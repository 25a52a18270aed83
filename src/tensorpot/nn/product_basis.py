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

from tensorpot.nn.tensor_product import NodeTensorProduct, rank_sizes
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
        # uncoupled steps with a small coupling matrix run as one dense product (see
        # NodeTensorProduct.dense_coupling); the buffers are derived, not saved
        self.dense = [not coupled and use_dense(step) for step in steps]
        for k, step in enumerate(steps):
            if self.dense[k]:
                self.register_buffer(f"dense_{k}", step.dense_coupling(), persistent=False)
        for k in range(len(self.sums)):
            slots = ([1] * (max_rank + 1) if k == 0 else steps[k - 1].out_multiplicities)[
                : out_max_rank + 1
            ]
            columns, ranks = _flat_columns(slots)
            self.register_buffer(f"slot_columns_{k}", columns, persistent=False)
            self.register_buffer(f"rank_sum_{k}", ranks, persistent=False)

    def forward(self, a: list[Tensor], species: Tensor) -> list[Tensor]:
        a_flat = torch.cat(a, dim=-1)  # [N, C, (L+1)^2]
        t: list[Tensor] | None = [a_l.unsqueeze(2) for a_l in a]  # T_1 = A, one slot per rank
        flat: Tensor | None = a_flat  # the same T, flattened (ranks, then slots, components)
        basis = self._summed(0, flat, species)
        for k, (step, summation) in enumerate(zip(self.steps, self.sums[1:])):
            if self.dense[k]:
                if flat is None:
                    flat = torch.cat([t_l.flatten(2) for t_l in t], dim=-1)
                outer = (flat.unsqueeze(-1) * a_flat.unsqueeze(-2)).flatten(2)  # [N, C, D_T D_a]
                flat, t = outer @ getattr(self, f"dense_{k}"), None  # [N, C, D_T']
                b_k = self._summed(k + 1, flat, species)
            else:
                if t is None:
                    t = _unflatten(flat, step.in_multiplicities)
                if k == len(self.steps) - 1 and not summation.coupled:
                    # last step: fold the path weights in, never materialise T_nu
                    b_k = torch.cat(step.weighted(t, a_flat, summation.gathered(species)), -1)
                else:
                    t, flat = step(t, a_flat), None
                    b_k = torch.cat(summation(t[: self.out_max_rank + 1], species), dim=-1)
            basis = basis + b_k
        sizes = [2 * r + 1 for r in range(self.out_max_rank + 1)]
        return list(basis.split(sizes, dim=-1))

    def _summed(self, k: int, flat: Tensor, species: Tensor) -> Tensor:
        """``B_k`` of a flattened ``T_k``: ``[N, C, D_T] -> [N, C, (out_max_rank + 1)^2]``."""
        summation = self.sums[k]
        if summation.coupled:
            slots = (
                [1] * (self.out_max_rank + 1) if k == 0 else self.steps[k - 1].out_multiplicities
            )
            t = _unflatten(flat, slots)[: self.out_max_rank + 1]
            return torch.cat(summation(t, species), dim=-1)
        columns = getattr(self, f"slot_columns_{k}")
        weights = torch.cat([w * s for w, s in zip(summation.weights, summation.scales)], dim=2)
        weights = weights.index_select(2, columns)[species]  # [N, C, D] per column of T
        used = flat[..., : columns.shape[0]] * weights  # ranks <= out_max_rank come first
        ranks = getattr(self, f"rank_sum_{k}")
        return used if ranks.shape[0] == ranks.shape[1] else used @ ranks


def use_dense(step: NodeTensorProduct) -> bool:
    """Whether a product step runs as one dense product (:meth:`NodeTensorProduct.dense_coupling`).

    The dense matrix ``K`` does the work of the block-sparse products (``sum over l1 of
    D_a Q (2 l1 + 1) + P (2 l1 + 1) Q`` multiply-adds per node and channel) with many times
    fewer operations, and wins while it is not much larger than that work: fewer than 1024
    elements, or at most 3.5 times the block-sparse count. Measured per step, forward and
    backward, at 8 and 32 channels on 270 atoms (2 threads): e.g. L = 1 steps 1.5-2x faster,
    L = 2 first step up to 2x, L = 3 first step 1.5x; steps with ``K`` 16-40 times the sparse
    work 2-3x slower, so they keep the block-sparse products.
    """
    d_a = (step.max_l2 + 1) ** 2
    size = sum(rank_sizes(step.in_multiplicities)) * d_a * sum(rank_sizes(step.out_multiplicities))
    sparse = 0
    for k, l1 in enumerate(step.ranks_l1):
        q = getattr(step, f"coupling_{k}").shape[1] // (2 * l1 + 1)
        sparse += (d_a + step.in_multiplicities[l1]) * (2 * l1 + 1) * q
    return size < 1024 or size <= 3.5 * sparse


def _flat_columns(slots: list[int]) -> tuple[Tensor, Tensor]:
    """For ``T`` flattened over ranks ``l`` (``slots[l]`` slots of ``2l+1`` components each):
    the weight slot of every column (slots of all ranks numbered in turn) and the 0/1 matrix
    summing the slots of every rank, ``[D_T, sum_l (2l+1)]``."""
    columns, targets, slot0 = [], [], 0
    for r, p in enumerate(slots):
        for s in range(p):
            columns += [slot0 + s] * (2 * r + 1)
            targets += [r * r + m for m in range(2 * r + 1)]
        slot0 += p
    ranks = torch.zeros(len(columns), len(slots) ** 2, dtype=torch.float64)
    ranks[torch.arange(len(columns)), torch.tensor(targets)] = 1.0
    return torch.tensor(columns), ranks


def _unflatten(flat: Tensor, slots: list[int]) -> list[Tensor]:
    """``[N, C, D_T] -> [N, C, slots[l], 2l+1]`` per rank (views)."""
    sizes = rank_sizes(slots)
    parts = flat[..., : sum(sizes)].split(sizes, dim=-1)
    return [part.unflatten(-1, (p, 2 * r + 1)) for r, (part, p) in enumerate(zip(parts, slots))]
