r"""Radial features of an edge: Bessel basis times a polynomial envelope, and the radial MLP.

.. math::

    b_n(r) = \sqrt{2/r_c}\, \frac{\sin(n\pi r/r_c)}{r}, \qquad
    f(r) = 1 - \tfrac{(p+1)(p+2)}{2} x^p + p(p+2) x^{p+1} - \tfrac{p(p+1)}{2} x^{p+2},
    \quad x = r/r_c

(ICTP spec 3.3; the same functions as MACE). :math:`f` and its first two derivatives vanish at
:math:`r_c`, so energies and forces are continuous when a neighbour crosses the cutoff.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tensorpot.nn import cpu_kernel
from tensorpot.nn.activations import SILU_NORM


class BesselBasis(nn.Module):
    """``[E] -> [E, num_basis]`` radial Bessel functions on ``(0, r_max)``."""

    def __init__(self, r_max: float, num_basis: int = 8):
        super().__init__()
        self.r_max = float(r_max)
        n = torch.arange(1, num_basis + 1, dtype=torch.float64)
        self.register_buffer("frequencies", n * math.pi / self.r_max)

    def forward(self, r: Tensor) -> Tensor:
        r = r.unsqueeze(-1)
        return math.sqrt(2.0 / self.r_max) * torch.sin(self.frequencies * r) / r


class PolynomialCutoff(nn.Module):
    """``[E] -> [E]`` smooth envelope ``f(r)``, zero for ``r >= r_max``."""

    def __init__(self, r_max: float, p: int = 5):
        super().__init__()
        self.r_max = float(r_max)
        self.p = int(p)

    def forward(self, r: Tensor) -> Tensor:
        p, x = self.p, r / self.r_max
        f = (
            1.0
            - 0.5 * (p + 1) * (p + 2) * x**p
            + p * (p + 2) * x ** (p + 1)
            - 0.5 * p * (p + 1) * x ** (p + 2)
        )
        return f * (x < 1.0).to(f.dtype)


class RadialEmbedding(nn.Module):
    """Edge lengths ``[E]`` -> radial features ``b(r) f(r)`` ``[E, num_basis]``."""

    def __init__(self, r_max: float, num_basis: int = 8, num_cutoff_basis: int = 5):
        super().__init__()
        self.basis = BesselBasis(r_max, num_basis)
        self.cutoff = PolynomialCutoff(r_max, num_cutoff_basis)

    def forward(self, r: Tensor) -> Tensor:
        return self.basis(r) * self.cutoff(r).unsqueeze(-1)


class NormalizedLinear(nn.Module):
    """Bias-free linear map with ``N(0, 1)`` weights and ``1/sqrt(fan_in)`` in the forward pass."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(in_features, out_features))
        self.scale = 1.0 / math.sqrt(in_features)

    def forward(self, x: Tensor) -> Tensor:
        return x @ (self.weight * self.scale)  # scale the small weight, not the large output


def matmul(x: Tensor, w: Tensor, kernel: bool = False) -> Tensor:
    """``x [M, K] @ w [K, N]``. With ``kernel`` (:func:`tensorpot.nn.cpu_kernel.choose`), on
    the CPU in float32 or float64 and a constant ``w`` (frozen parameters: inference, export),
    by the CPU kernel's operator ``torch.ops.tensorpot.matmul``, which is faster on the radial
    MLP's tall, narrow products than a general BLAS, and whose derivatives are the operator
    again; otherwise, and whenever ``w`` needs a gradient (training), by PyTorch."""
    if w.requires_grad or not cpu_kernel.applies(kernel, x, w):
        return x @ w
    return torch.ops.tensorpot.matmul(x, w)


class RadialMLP(nn.Module):
    """The radial MLP ``[E, widths[0]] -> [E, widths[-1]]``: normalised linears and scaled SiLU.

    No activation after the last layer (ICTP spec 3.3). The SiLU normalisation constant is
    folded into the next layer's weight, so no operation runs on the edge-sized activations
    for it.
    """

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        #: run the products by the CPU kernel (:func:`tensorpot.nn.cpu_kernel.choose`)
        self.cpu_kernel = False
        self.layers = nn.ModuleList(
            [NormalizedLinear(a, b) for a, b in zip(widths[:-1], widths[1:])]
        )

    def forward(self, x: Tensor) -> Tensor:
        for k, layer in enumerate(self.layers):
            if k == 0:
                x = matmul(x, layer.weight * layer.scale, self.cpu_kernel)
            else:
                w = layer.weight * (layer.scale * SILU_NORM)
                x = matmul(torch.nn.functional.silu(x), w, self.cpu_kernel)
        return x
