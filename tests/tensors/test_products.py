"""Irreducible Cartesian products (ICTP Eqs. (2), (3)): properties P1-P7 of spec section 7."""

from __future__ import annotations

import itertools

import pytest
import torch

from tensorpot.tensors import (
    cartesian_harmonic,
    coupling_paths,
    coupling_tensor,
    even_constant,
    from_compressed,
    ict_product,
    path_multiplicities,
    product_paths,
    stf_project,
    to_compressed,
    unit_coupling,
)
from tests.conftest import random_rotation, rotate_tensor

MAX_RANK = 4
ALL_PATHS = product_paths(MAX_RANK, MAX_RANK, MAX_RANK, odd=True)
EVEN_PATHS = [p for p in ALL_PATHS if p.is_even]
ODD_PATHS = [p for p in ALL_PATHS if not p.is_even]
TOL = 1e-11


def _random_ict(rank: int, seed: int, batch: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return stf_project(torch.randn((batch,) + (3,) * rank, generator=g, dtype=torch.float64), rank)


def _id(p) -> str:
    return f"{p.l1}x{p.l2}to{p.l3}"


def test_path_lists_cover_both_parities():
    assert len(EVEN_PATHS) > 0 and len(ODD_PATHS) > 0
    assert all(abs(p.l1 - p.l2) <= p.l3 <= p.l1 + p.l2 for p in ALL_PATHS)


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_p1_closure_symmetric_traceless(path):
    out = ict_product(_random_ict(path.l1, 1), _random_ict(path.l2, 2), *path)
    assert torch.allclose(stf_project(out, path.l3), out, atol=TOL)
    assert out.abs().max() > 1e-6  # not trivially zero


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_p2_rotation_and_parity(path):
    a, b = _random_ict(path.l1, 3), _random_ict(path.l2, 4)
    rot = random_rotation(path.l1 * 25 + path.l2 * 5 + path.l3)
    lhs = ict_product(rotate_tensor(a, rot, path.l1), rotate_tensor(b, rot, path.l2), *path)
    rhs = rotate_tensor(ict_product(a, b, *path), rot, path.l3)
    assert torch.allclose(lhs, rhs, atol=TOL)
    inv = -torch.eye(3, dtype=torch.float64)
    lhs = ict_product(rotate_tensor(a, inv, path.l1), rotate_tensor(b, inv, path.l2), *path)
    sign = 1 if path.is_even else -1  # odd paths give pseudotensors: one extra sign
    assert torch.allclose(
        lhs, sign * rotate_tensor(ict_product(a, b, *path), inv, path.l3), atol=TOL
    )


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_p3_same_vector_rule(path):
    n = torch.randn(4, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out = ict_product(cartesian_harmonic(n, path.l1), cartesian_harmonic(n, path.l2), *path)
    expected = cartesian_harmonic(n, path.l3) if path.is_even else torch.zeros_like(out)
    assert torch.allclose(out, expected, atol=TOL)


def test_p3_constants_match_spec_table():
    table = {
        (1, 1, 2): 3 / 2, (1, 2, 3): 5 / 3, (2, 2, 0): 2 / 3, (2, 3, 1): 2 / 3,
        (3, 3, 0): 2 / 5, (4, 4, 0): 8 / 35, (4, 4, 4): 28 / 9, (2, 2, 4): 35 / 18,
    }  # fmt: skip
    for (l1, l2, l3), value in table.items():
        assert even_constant(l1, l2, l3) == pytest.approx(value, rel=1e-14)


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_p4_input_symmetry(path):
    a, b = _random_ict(path.l1, 6), _random_ict(path.l2, 7)
    sign = 1 if path.is_even else -1
    assert torch.allclose(
        ict_product(b, a, path.l2, path.l1, path.l3), sign * ict_product(a, b, *path), atol=TOL
    )


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_p5_bilinear(path):
    a, a2, b = _random_ict(path.l1, 8), _random_ict(path.l1, 9), _random_ict(path.l2, 10)
    lhs = ict_product(2.0 * a - 3.0 * a2, b, *path)
    rhs = 2.0 * ict_product(a, b, *path) - 3.0 * ict_product(a2, b, *path)
    assert torch.allclose(lhs, rhs, atol=TOL)
    # batch rows (channels) do not mix: changing row 0 leaves rows 1.. unchanged
    a3 = a.clone()
    a3[0] = a2[0]
    assert torch.allclose(ict_product(a3, b, *path)[1:], ict_product(a, b, *path)[1:], atol=TOL)


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_compressed_coupling_equals_full_product(path):
    a, b = _random_ict(path.l1, 11), _random_ict(path.l2, 12)
    full = to_compressed(ict_product(a, b, *path), path.l3)
    ca, cb = to_compressed(a, path.l1), to_compressed(b, path.l2)
    compressed = torch.einsum("bi,bj,ijk->bk", ca, cb, coupling_tensor(*path))
    assert torch.allclose(compressed, full, atol=TOL)
    assert torch.allclose(from_compressed(full, path.l3), ict_product(a, b, *path), atol=TOL)


@pytest.mark.parametrize("path", ODD_PATHS, ids=_id)
def test_odd_normalisation_is_ours(path):
    """Documented choice: squared Frobenius norm of the odd coupling tensor is 2 l3 + 1."""
    k = coupling_tensor(*path)
    assert float(k.pow(2).sum()) == pytest.approx(2 * path.l3 + 1, rel=1e-12)


def _sizes(counts):
    return sum(3**rank * p for rank, p in enumerate(counts))


def test_p6_path_bookkeeping():
    full = path_multiplicities(product_paths(3, 3, 3), [1] * 4, 3)
    sym = path_multiplicities(product_paths(3, 3, 3, symmetric=True), [1] * 4, 3)
    assert (full, _sizes(full)) == ([4, 6, 7, 6], 247)
    assert (sym, _sizes(sym)) == ([4, 3, 5, 3], 139)
    assert path_multiplicities(product_paths(3, 3, 2), sym, 2) == [15, 23, 26]
    step = path_multiplicities(product_paths(3, 3, 3), full, 3)
    assert (step, _sizes(step)) == ([23, 36, 42, 36], 1481)
    conv = [path_multiplicities(product_paths(lm, 3, 3), [1] * (lm + 1), 3) for lm in range(4)]
    assert conv == [[1, 1, 1, 1], [2, 3, 3, 2], [3, 5, 5, 4], [4, 6, 7, 6]]


@pytest.mark.parametrize("path", [p for p in EVEN_PATHS if p.l1 != p.l2], ids=_id)
def test_p7_symmetric_product_drops_only_duplicates(path):
    x = {rank: _random_ict(rank, 20 + rank) for rank in range(MAX_RANK + 1)}
    kept = ict_product(x[path.l1], x[path.l2], *path)
    mirrored = ict_product(x[path.l2], x[path.l1], path.l2, path.l1, path.l3)
    assert torch.allclose(kept, mirrored, atol=TOL)
    sym = product_paths(MAX_RANK, MAX_RANK, MAX_RANK, symmetric=True)
    assert (max(path.l1, path.l2), min(path.l1, path.l2), path.l3) in sym
    assert (min(path.l1, path.l2), max(path.l1, path.l2), path.l3) not in sym


def test_p7_symmetric_odd_self_products():
    x = {rank: _random_ict(rank, 40 + rank) for rank in range(MAX_RANK + 1)}
    for path in ODD_PATHS:
        out = ict_product(x[path.l1], x[path.l2], *path)
        if path.l1 == path.l2:
            assert torch.allclose(out, torch.zeros_like(out), atol=TOL)
    sym = product_paths(MAX_RANK, MAX_RANK, MAX_RANK, symmetric=True, odd=True)
    assert all(p.l1 > p.l2 for p in sym if not p.is_even)
    assert all(p.l1 >= p.l2 for p in sym)
    assert set(itertools.chain(sym)) <= set(ALL_PATHS)


@pytest.mark.parametrize("path", ALL_PATHS, ids=_id)
def test_unit_coupling_has_unit_variance_per_output_coordinate(path):
    """sum_ij K_ijk^2 = 1 for every k, the same tensor up to a positive scale."""
    k = unit_coupling(*path)
    assert torch.allclose(k.pow(2).sum(dim=(0, 1)), torch.ones(2 * path.l3 + 1, dtype=k.dtype))
    raw = coupling_tensor(*path)
    assert torch.allclose(k, raw * (k.norm() / raw.norm()), atol=1e-14)


def test_coupling_paths_split_the_admissible_paths_by_parity():
    ranks = range(MAX_RANK + 1)
    even = coupling_paths(ranks, ranks, ranks, "even")
    odd = coupling_paths(ranks, ranks, ranks, "odd")
    assert even == EVEN_PATHS and odd == ODD_PATHS
    assert coupling_paths([1, 2], [1, 2], [1, 2]) == [(1, 2, 1), (2, 1, 1), (1, 1, 2), (2, 2, 2)]
    with pytest.raises(ValueError, match="parity"):
        coupling_paths(ranks, ranks, ranks, "both")
