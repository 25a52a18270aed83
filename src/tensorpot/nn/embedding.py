"""Species embedding: ``h_u = W z_u / sqrt(S)`` for the one-hot species ``z_u`` (ICTP spec 3.2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SpeciesEmbedding(nn.Module):
    """``species [N] -> [N, C]`` scalar features, no bias."""

    def __init__(self, num_species: int, num_channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_species, num_channels))
        self.scale = 1.0 / math.sqrt(num_species)

    def forward(self, species: Tensor) -> Tensor:
        return self.weight[species] * self.scale
