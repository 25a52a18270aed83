"""Degree-1 and degree-2 harmonics and their Gaunt couplings: e3nn's basis, equivariance."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from tensorpot.tensors import compressed_harmonics, double_factorial
from tensorpot.tensors.spherical import (
    degree2_matrices,
    gaunt,
    spherical_from_compressed,
    spherical_harmonics_12,
)
from tests.conftest import random_rotation

PATHS = [(1, 1, 2), (1, 2, 1), (2, 1, 1), (2, 2, 2)]


def units(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(
        torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1
    )


def wigner_d(rotation: torch.Tensor) -> torch.Tensor:
    """The 8x8 block-diagonal representation, fitted from ``Y(R u) = D Y(u)`` on many points."""
    u = units(200, seed=1)
    y, y_rot = spherical_harmonics_12(u), spherical_harmonics_12(u @ rotation.T)
    return torch.linalg.lstsq(y, y_rot).solution.T


def test_harmonics_have_unit_norm_per_degree_and_vanish_at_zero():
    y = spherical_harmonics_12(units(10))
    assert torch.allclose(y[:, :3].norm(dim=-1), torch.ones(10, dtype=torch.float64))
    assert torch.allclose(y[:, 3:].norm(dim=-1), torch.ones(10, dtype=torch.float64))
    assert torch.equal(spherical_harmonics_12(torch.zeros(1, 3)), torch.zeros(1, 8))


@pytest.mark.parametrize("path", PATHS)
def test_gaunt_is_equivariant_with_unit_norm(path):
    l1, l2, l3 = path
    d = wigner_d(random_rotation(3))
    block = {1: slice(0, 3), 2: slice(3, 8)}
    d1, d2, d3 = (d[block[deg], block[deg]] for deg in path)
    c = gaunt(l1, l2, l3)
    rotated = torch.einsum("ia,jb,ijk->abk", d1, d2, c)
    assert torch.allclose(rotated, torch.einsum("abc,kc->abk", c, d3), atol=1e-12)
    assert abs(float(c.norm()) - 1.0) < 1e-14


@pytest.mark.parametrize("path", [(1, 1, 1), (1, 2, 2), (2, 2, 1), (0, 1, 1)])
def test_parity_forbidden_couplings_are_refused(path):
    with pytest.raises(ValueError, match="no parity-allowed coupling"):
        gaunt(*path)


@pytest.mark.skipif(importlib.util.find_spec("e3nn") is None, reason="e3nn not installed")
@pytest.mark.parametrize("path", PATHS)
def test_gaunt_equals_e3nn_wigner_3j(path):
    torch.serialization.add_safe_globals([slice])  # e3nn 0.4.4 under torch >= 2.6
    from e3nn import o3

    assert torch.allclose(gaunt(*path), o3.wigner_3j(*path, dtype=torch.float64), atol=1e-14)


def test_degree2_matrices_are_an_orthonormal_symmetric_traceless_basis():
    b = degree2_matrices()
    gram = torch.einsum("mab,nab->mn", b, b)
    assert torch.allclose(gram, torch.eye(5, dtype=torch.float64), atol=1e-15)
    assert torch.allclose(b, b.transpose(1, 2)) and torch.allclose(
        torch.einsum("maa->m", b), torch.zeros(5, dtype=torch.float64), atol=1e-15
    )
    u = units(6)
    y2 = spherical_harmonics_12(u)[:, 3:]
    assert torch.allclose(y2, 1.5**0.5 * torch.einsum("mab,na,nb->nm", b, u, u), atol=1e-15)


@pytest.mark.parametrize("degree", [1, 2])
def test_spherical_from_compressed_is_the_orthogonal_change_of_basis(degree):
    """Y^l(u) = sqrt(l! / (2l-1)!!) Q T^(l)_compressed(u), Q orthogonal."""
    q = spherical_from_compressed(degree)
    u = units(30, seed=4)
    block = {1: slice(0, 3), 2: slice(3, 8)}[degree]
    scale = math.sqrt(math.factorial(degree) / double_factorial(2 * degree - 1))
    cart = compressed_harmonics(u, degree)[degree]
    assert torch.allclose(spherical_harmonics_12(u)[:, block], scale * cart @ q.T, atol=1e-14)
    assert torch.allclose(q @ q.T, torch.eye(2 * degree + 1, dtype=q.dtype), atol=1e-14)
    with pytest.raises(ValueError, match="degrees 1 and 2"):
        spherical_from_compressed(3)
