"""Channel-mixing maps on rank-resolved features: they never touch the Cartesian indices.

Features are lists indexed by rank ``l``: ``x[l]`` has shape ``[N, C, 2l+1]`` (compressed STF
coordinates, see :mod:`tensorpot.tensors.harmonics`). Mixing channels with a matrix commutes
with rotations and keeps every block symmetric and traceless (ICTP spec L1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class RankLinear(nn.Module):
    """Per-rank linear map of channels, ``[N, C_in, 2l+1] -> [N, C_out, 2l+1]``, no bias.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        max_rank: ranks ``0..max_rank`` are mapped (one weight matrix each).
    """

    def __init__(self, in_channels: int, out_channels: int, max_rank: int):
        super().__init__()
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.randn(in_channels, out_channels)) for _ in range(max_rank + 1)]
        )
        self.scale = 1.0 / math.sqrt(in_channels)

    def forward(self, x: list[Tensor]) -> list[Tensor]:
        return [torch.einsum("ncm,cd->ndm", x_l, w) * self.scale for x_l, w in zip(x, self.weights)]


class SpeciesLinear(nn.Module):
    """Species-dependent linear map (the self-connection of ICTP spec 3.4.1).

    ``y_l[n] = W_l[species[n]]^T x_l[n] / sqrt(C_in S)``: a fully connected product of the
    features with the one-hot species. Output ranks above the input's are zero.

    Args:
        in_channels: ``C_in``.
        out_channels: ``C_out``.
        num_species: ``S``.
        in_max_rank: largest rank of the input.
        out_max_rank: largest rank of the output.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_species: int,
        in_max_rank: int,
        out_max_rank: int,
    ):
        super().__init__()
        ranks = min(in_max_rank, out_max_rank) + 1
        self.weights = nn.ParameterList(
            [
                nn.Parameter(torch.randn(num_species, in_channels, out_channels))
                for _ in range(ranks)
            ]
        )
        self.out_channels = out_channels
        self.out_max_rank = out_max_rank
        self.scale = 1.0 / math.sqrt(in_channels * num_species)

    def forward(self, x: list[Tensor], species: Tensor) -> list[Tensor]:
        out = [
            torch.einsum("ncm,ncd->ndm", x_l, w[species]) * self.scale
            for x_l, w in zip(x, self.weights)
        ]
        ref = x[0]
        for rank in range(len(out), self.out_max_rank + 1):
            out.append(ref.new_zeros(ref.shape[0], self.out_channels, 2 * rank + 1))
        return out
