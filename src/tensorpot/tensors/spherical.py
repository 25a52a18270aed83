r"""Real spherical harmonics of degrees 1 and 2 and their coupling (Gaunt) coefficients.

The basis is e3nn's ("norm" normalisation, each degree block of unit norm on the unit sphere),
so that features built from these harmonics can be coupled with e3nn's Wigner 3j symbols:

.. math::

    Y^1(u) = (x, y, z), \qquad
    Y^2(u) = \bigl(\sqrt3\,xz,\ \sqrt3\,xy,\ y^2 - \tfrac12(x^2 + z^2),\ \sqrt3\,yz,
    \ \tfrac{\sqrt3}{2}(z^2 - x^2)\bigr).

A degree-1 plus degree-2 object is stored as 8 components ``[Y^1, Y^2]`` (FreeCG spec 1).
The coupling of degrees ``(l1, l2) -> l3`` is the Gaunt tensor

.. math::

    C_{m_1 m_2 m_3} \propto \int_{S^2} Y^{l_1}_{m_1}(u)\, Y^{l_2}_{m_2}(u)\, Y^{l_3}_{m_3}(u)\, du,

normalised to unit Frobenius norm. It is equivariant and non-zero exactly when
``l1 + l2 + l3`` is even (the parity-allowed couplings), and then equals e3nn's
``o3.wigner_3j(l1, l2, l3)`` (sign included; checked in the tests).
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from torch import Tensor

from tensorpot.tensors.harmonics import stf_basis

_SQRT3 = math.sqrt(3.0)


def spherical_harmonics_12(unit: Tensor) -> Tensor:
    """``[Y^1(u), Y^2(u)]`` of unit vectors ``u [..., 3]`` as ``[..., 8]``; ``Y(0) = 0``."""
    x, y, z = unit.unbind(-1)
    return torch.stack(
        [
            x,
            y,
            z,
            _SQRT3 * x * z,
            _SQRT3 * x * y,
            y * y - 0.5 * (x * x + z * z),
            _SQRT3 * y * z,
            0.5 * _SQRT3 * (z * z - x * x),
        ],
        dim=-1,
    )


@cache
def _sphere_quadrature() -> tuple[np.ndarray, np.ndarray]:
    """Nodes ``[Q, 3]`` and weights ``[Q]`` exact for polynomials of degree <= 15 on S^2."""
    t, w = np.polynomial.legendre.leggauss(8)
    phi = np.arange(16) * 2.0 * np.pi / 16
    cos_t, ph = np.meshgrid(t, phi, indexing="ij")
    sin_t = np.sqrt(1.0 - cos_t**2)
    nodes = np.stack([sin_t * np.cos(ph), sin_t * np.sin(ph), cos_t], axis=-1).reshape(-1, 3)
    weights = (np.repeat(w[:, None], 16, axis=1) * 2.0 * np.pi / 16).reshape(-1)
    return nodes, weights


@cache
def _gaunt(l1: int, l2: int, l3: int) -> Tensor:
    nodes, weights = _sphere_quadrature()
    y = spherical_harmonics_12(torch.from_numpy(nodes)).numpy()
    block = {1: y[:, :3], 2: y[:, 3:]}
    c = np.einsum("q,qa,qb,qc->abc", weights, block[l1], block[l2], block[l3])
    return torch.from_numpy(c / np.linalg.norm(c))


def gaunt(l1: int, l2: int, l3: int) -> Tensor:
    """The coupling tensor ``[2 l1 + 1, 2 l2 + 1, 2 l3 + 1]`` (float64, unit norm) of degrees
    1 and 2 in the basis of :func:`spherical_harmonics_12`.

    Raises:
        ValueError: a degree outside {1, 2}, or an odd ``l1 + l2 + l3`` (no parity-allowed
            coupling).
    """
    if not {l1, l2, l3} <= {1, 2} or (l1 + l2 + l3) % 2:
        raise ValueError(f"no parity-allowed coupling of degrees ({l1}, {l2}) -> {l3}")
    return _gaunt(l1, l2, l3).clone()


@cache
def _degree2_matrices() -> Tensor:
    m = torch.zeros(5, 3, 3, dtype=torch.float64)
    r2, r6 = math.sqrt(2.0), math.sqrt(6.0)
    m[0, 0, 2] = m[0, 2, 0] = 1 / r2  # xz
    m[1, 0, 1] = m[1, 1, 0] = 1 / r2  # xy
    m[2, 1, 1], m[2, 0, 0], m[2, 2, 2] = 2 / r6, -1 / r6, -1 / r6  # 2y^2 - x^2 - z^2
    m[3, 1, 2] = m[3, 2, 1] = 1 / r2  # yz
    m[4, 2, 2], m[4, 0, 0] = 1 / r2, -1 / r2  # z^2 - x^2
    return m


def degree2_matrices() -> Tensor:
    """An orthonormal basis ``[5, 3, 3]`` of symmetric traceless matrices matching the degree-2
    components: ``Y^2(u) = sqrt(3/2) <B_m, u u^T>``, so ``sum_m c_m B_m`` turns degree-2
    coordinates ``c`` into a Cartesian rank-2 tensor that rotates as ``R S R^T``."""
    return _degree2_matrices().clone()


def spherical_from_compressed(degree: int) -> Tensor:
    r"""The orthogonal ``[2l+1, 2l+1]`` matrix ``Q`` taking compressed Cartesian coordinates
    (:func:`tensorpot.tensors.harmonics.stf_basis`) of a rank-``l`` symmetric traceless tensor
    to the degree-``l`` spherical coordinates of this module, ``l`` in {1, 2}.

    Degree 1: the identity (both are x, y, z). Degree 2: the spherical coordinates ``c`` stand
    for the tensor :math:`S = \sum_m c_m B_m` (:func:`degree2_matrices`) whose compressed
    coordinates are :math:`U^T \mathrm{vec}(S)`, so :math:`Q = (U^T B)^T`. Both bases are
    orthonormal bases of the same space, hence ``Q`` is orthogonal, and the harmonics agree up
    to a scale: :math:`Y^l(u) = \sqrt{l!/(2l-1)!!}\; Q\, T^{(l)}_{\mathrm{comp}}(u)`.
    """
    if degree == 1:
        return torch.eye(3, dtype=torch.float64)
    if degree != 2:
        raise ValueError(f"degrees 1 and 2 only, got {degree}")
    b = _degree2_matrices().reshape(5, 9).T  # [9, 5]
    return (stf_basis(2).T @ b).T
