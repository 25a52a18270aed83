"""Cartesian harmonics T^(l)(n) (ICTP Eq. (1)): properties T1-T6 of spec section 7, ranks 0-6."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tensorpot.tensors import (
    cartesian_harmonic,
    compressed_harmonics,
    from_compressed,
    harmonic_norm,
    stf_basis,
    stf_project,
    to_compressed,
)
from tests.conftest import random_rotation, rotate_tensor

RANKS = list(range(7))
TOL = 1e-12
vectors = st.lists(st.floats(-3, 3), min_size=3, max_size=3).filter(
    lambda v: sum(x * x for x in v) > 0.05
)


def _vec(v) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


def _contract_all(t: torch.Tensor, m: torch.Tensor, rank: int) -> torch.Tensor:
    for _ in range(rank):
        t = t @ m
    return t


def test_rank_two_closed_form():
    n = torch.nn.functional.normalize(torch.tensor([0.3, -1.2, 0.7], dtype=torch.float64), dim=0)
    expected = 1.5 * torch.outer(n, n) - 0.5 * torch.eye(3, dtype=torch.float64)
    assert torch.allclose(cartesian_harmonic(n, 2), expected, atol=TOL)


@pytest.mark.parametrize("rank", RANKS)
@given(v=vectors)
def test_t1_symmetric(rank, v):
    t = cartesian_harmonic(_vec(v), rank)
    for perm in itertools.permutations(range(rank)):
        assert torch.allclose(t.permute(perm), t, atol=TOL)


@pytest.mark.parametrize("rank", [r for r in RANKS if r >= 2])
@given(v=vectors)
def test_t2_traceless(rank, v):
    t = cartesian_harmonic(_vec(v), rank)
    for i, j in itertools.combinations(range(rank), 2):
        assert torch.diagonal(t, dim1=i, dim2=j).sum(-1).abs().max() < TOL


@pytest.mark.parametrize("rank", RANKS)
@given(v=vectors, w=vectors)
def test_t3_normalisation(rank, v, w):
    n = torch.nn.functional.normalize(_vec(v), dim=0)
    m = torch.nn.functional.normalize(_vec(w), dim=0)
    tn, tm = cartesian_harmonic(n, rank), cartesian_harmonic(m, rank)
    legendre = np.polynomial.legendre.Legendre.basis(rank)(float(n @ m))
    assert abs(float(_contract_all(tn, n, rank)) - 1.0) < TOL
    assert abs(float(_contract_all(tn, m, rank)) - legendre) < TOL
    assert abs(float((tn * tm).sum()) - harmonic_norm(rank) * legendre) < 1e-11


@pytest.mark.parametrize("rank", RANKS)
def test_t4_span_has_dimension_2l_plus_1(rank):
    g = torch.Generator().manual_seed(rank)
    n = torch.randn(4 * rank + 8, 3, generator=g, dtype=torch.float64)
    flat = cartesian_harmonic(n, rank).reshape(n.shape[0], -1)
    assert torch.linalg.matrix_rank(flat, rtol=1e-10) == 2 * rank + 1


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("seed", [0, 1])
def test_t5_rotation_and_parity(rank, seed):
    rot = random_rotation(seed)
    n = torch.randn(5, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    rotated = cartesian_harmonic(n @ rot.T, rank)
    assert torch.allclose(rotated, rotate_tensor(cartesian_harmonic(n, rank), rot, rank), atol=TOL)
    assert torch.allclose(cartesian_harmonic(-n, rank), (-1) ** rank * cartesian_harmonic(n, rank))


@pytest.mark.parametrize("rank", RANKS)
@given(v=vectors, alpha=st.floats(0.01, 100.0))
def test_t6_scale_invariance(rank, v, alpha):
    r = _vec(v)
    assert torch.allclose(
        cartesian_harmonic(alpha * r, rank), cartesian_harmonic(r, rank), atol=TOL
    )


@pytest.mark.parametrize("rank", RANKS)
def test_stf_projector_properties(rank):
    g = torch.Generator().manual_seed(rank)
    t = torch.randn((4,) + (3,) * rank, generator=g, dtype=torch.float64)
    p = stf_project(t, rank)
    assert torch.allclose(stf_project(p, rank), p, atol=TOL)  # idempotent
    # orthogonal: <t - STF t, STF s> = 0
    s = stf_project(torch.randn_like(t), rank)
    assert float(((t - p) * s).sum()).__abs__() < 1e-10


@pytest.mark.parametrize("rank", RANKS)
def test_compressed_basis_orthonormal_and_exact(rank):
    u = stf_basis(rank)
    assert torch.allclose(u.T @ u, torch.eye(2 * rank + 1, dtype=torch.float64), atol=TOL)
    n = torch.randn(6, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    full = cartesian_harmonic(n, rank)
    compressed = compressed_harmonics(n, rank)[rank]
    scale = max(1.0, math.sqrt(harmonic_norm(rank)))
    assert torch.allclose(compressed, to_compressed(full, rank), atol=1e-12 * scale * 100)
    assert torch.allclose(from_compressed(to_compressed(full, rank), rank), full, atol=1e-12)


def test_addition_theorem_against_e3nn():
    """T(n):T(m) is proportional to Y(n).Y(m) of e3nn's spherical harmonics (independent code)."""
    pytest.importorskip("mace")  # e3nn 0.4.4 imports under torch 2.13 only after mace
    o3 = pytest.importorskip("e3nn.o3")
    g = torch.Generator().manual_seed(3)
    n, m = (
        torch.randn(10, 3, generator=g, dtype=torch.float64),
        torch.randn(10, 3, generator=g, dtype=torch.float64),
    )
    for rank in range(5):
        ours = (compressed_harmonics(n, rank)[rank] * compressed_harmonics(m, rank)[rank]).sum(-1)
        yn = o3.spherical_harmonics(rank, n, normalize=True, normalization="component")
        ym = o3.spherical_harmonics(rank, m, normalize=True, normalization="component")
        theirs = (yn * ym).sum(-1) * harmonic_norm(rank) / (2 * rank + 1)
        assert torch.allclose(ours, theirs, atol=1e-12)
