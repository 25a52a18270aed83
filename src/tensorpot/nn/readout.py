"""Readouts of the scalar channels into a site energy (ICTP spec 3.7)."""

from __future__ import annotations

from torch import Tensor, nn

from tensorpot.nn.activations import ScaledSiLU
from tensorpot.nn.radial import NormalizedLinear


class LinearReadout(nn.Module):
    """``[N, C] -> [N]``: a normalised linear map, used after every layer but the last."""

    def __init__(self, num_channels: int):
        super().__init__()
        self.linear = NormalizedLinear(num_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).squeeze(-1)


class MLPReadout(nn.Module):
    """``[N, C] -> [N]``: ``C -> hidden -> 1`` with a scaled SiLU, used after the last layer."""

    def __init__(self, num_channels: int, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            NormalizedLinear(num_channels, hidden), ScaledSiLU(), NormalizedLinear(hidden, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)
