"""Normalised activation: SiLU rescaled to unit second moment under a standard normal input."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn


def _silu_second_moment() -> float:
    """:math:`E[\\mathrm{silu}(z)^2]` for :math:`z \\sim N(0, 1)` by Gauss-Hermite quadrature."""
    z, w = np.polynomial.hermite_e.hermegauss(200)
    silu = z / (1.0 + np.exp(-z))
    return float(np.sum(w * silu**2) / math.sqrt(2.0 * math.pi))


SILU_NORM = 1.0 / math.sqrt(_silu_second_moment())  # 1.6765... (ICTP spec 3.3)


class ScaledSiLU(nn.Module):
    """``SILU_NORM * silu(x)``, so that unit-variance inputs give unit-second-moment outputs."""

    def forward(self, x: Tensor) -> Tensor:
        return SILU_NORM * torch.nn.functional.silu(x)
