"""FreeCG's group coupling on Cartesian products: equivariance and parity for ranks 1-4,
normalisation, the shuffle, and the equivalence with the spherical ``GroupCG`` at ranks 1, 2."""

from __future__ import annotations

import math

import pytest
import torch

from tensorpot.nn.abstract_edges import AbstractEdgeCoupling, CartesianGroupCoupling, default_shift
from tensorpot.nn.visnet import SPARSE_PATHS, GroupCG
from tensorpot.tensors import unit_coupling
from tensorpot.tensors.spherical import gaunt, spherical_from_compressed
from tests.conftest import random_rotation, rank_matrix

TOL = 1e-11


def features(n: int, channels: int, max_rank: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, channels, 2 * r + 1, generator=g, dtype=torch.float64)
        for r in range(max_rank + 1)
    ]


def transformed(x: list[torch.Tensor], rotation: torch.Tensor, sign: float = 1.0) -> list:
    return [sign * t @ rank_matrix(rotation, r).T for r, t in enumerate(x)]


@pytest.mark.parametrize("max_rank", [1, 2, 3, 4])
@pytest.mark.parametrize("parity", ["even", "odd"])
@pytest.mark.parametrize("proper", [True, False], ids=["rotation", "reflection"])
def test_coupling_is_equivariant_and_odd_paths_give_pseudotensors(max_rank, parity, proper):
    """T(D a, D b) = D T(a, b) for even paths; odd paths give pseudotensors, which pick up
    det(R) = -1 under a reflection on top of a true tensor's D(R)."""
    ranks = range(max_rank + 1)
    layer = CartesianGroupCoupling(2, 3, ranks, ranks, ranks, parity=parity, shift=3).double()
    a, b = features(4, 6, max_rank, 0), features(4, 6, max_rank, 1)
    rotation = random_rotation(max_rank) * (1.0 if proper else -1.0)
    out = layer(a, b)
    moved = layer(transformed(a, rotation), transformed(b, rotation))
    det = 1.0 if proper or parity == "even" else -1.0
    expected = transformed(out, rotation, det)
    assert len(out) == max_rank + 1
    for rank in layer.reached:
        assert out[rank].abs().max() > 1e-3  # not trivially zero
        assert torch.allclose(moved[rank], expected[rank], atol=TOL)
    if not proper and parity == "odd":  # a pseudotensor is not a true tensor
        wrong = transformed(out, rotation)
        assert any(not torch.allclose(moved[r], wrong[r], atol=1e-3) for r in layer.reached)


def test_path_lists_of_one_parity():
    even = CartesianGroupCoupling(1, 2, range(3), range(3), range(3)).paths
    odd = CartesianGroupCoupling(1, 2, range(3), range(3), range(3), parity="odd").paths
    assert all(p.is_even for p in even) and not any(p.is_even for p in odd)
    assert all(p.l3 > 0 for p in odd)  # an odd product never gives a (pseudo)scalar
    with pytest.raises(ValueError, match="no odd path"):
        CartesianGroupCoupling(1, 2, [0], [0, 1], [0, 1], parity="odd")


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_unit_variance_outputs(parity):
    """Unit-variance independent inputs and unit-magnitude weights give unit-variance output
    coordinates (the normalisation 1 / sqrt(P_l3 E^2) with |K|_F^2 = 2 l3 + 1)."""
    layer = CartesianGroupCoupling(2, 4, range(3), range(3), range(3), parity=parity).double()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        layer.weight.copy_(torch.randint(0, 2, layer.weight.shape, generator=g) * 2.0 - 1.0)
        a, b = features(6000, 8, 2, 3), features(6000, 8, 2, 4)
        out = layer(a, b)
    for rank in layer.reached:
        assert abs(float(out[rank].var()) - 1.0) < 0.05


def test_shuffle_moves_whole_groups():
    ranks = range(3)
    plain = CartesianGroupCoupling(4, 2, ranks, ranks, ranks).double()
    shifted = CartesianGroupCoupling(4, 2, ranks, ranks, ranks, shift=default_shift(4, 2))
    shifted = shifted.double()
    shifted.load_state_dict(plain.state_dict())
    a, b = features(3, 8, 2, 5), features(3, 8, 2, 6)
    assert default_shift(4, 2) == 6 and default_shift(32, 8) == 48 and default_shift(1, 8) == 0
    for x, y in zip(plain(a, b), shifted(a, b)):
        assert torch.equal(torch.roll(x, -6, dims=1), y)


@pytest.mark.parametrize("path", SPARSE_PATHS)
def test_each_path_is_a_fixed_linear_map_of_its_spherical_twin(path):
    """Least squares on random inputs finds the map M with  gaunt(Qx, Qy) = K(x, y) M  (x, y
    compressed Cartesian, Q the orthogonal change of basis); fresh inputs verify it, and M is
    +-Q^T / sqrt(2 l3 + 1): a sign and the change of basis of the output."""
    l1, l2, l3 = path
    q = {r: spherical_from_compressed(r) for r in (1, 2)}
    g = torch.Generator().manual_seed(sum(path))

    def pair(n):
        x = torch.randn(n, 2 * l1 + 1, generator=g, dtype=torch.float64)
        y = torch.randn(n, 2 * l2 + 1, generator=g, dtype=torch.float64)
        cart = torch.einsum("ni,nj,ijk->nk", x, y, unit_coupling(l1, l2, l3))
        sph = torch.einsum("ni,nj,ijk->nk", x @ q[l1].T, y @ q[l2].T, gaunt(l1, l2, l3))
        return cart, sph

    cart, sph = pair(100)
    m = torch.linalg.lstsq(cart, sph).solution
    cart, sph = pair(50)  # fresh inputs
    assert torch.allclose(cart @ m, sph, atol=1e-13)
    scaled = m * math.sqrt(2 * l3 + 1)
    sign = float(torch.sign(scaled[0] @ q[l3].T[0]))
    assert torch.allclose(scaled, sign * q[l3].T, atol=1e-12)


def test_group_coupling_at_ranks_1_2_equals_the_spherical_group_cg():
    """With the same weights (paths reordered, each times its sign) the Cartesian coupling of
    ranks {1, 2} is the spherical GroupCG (shift included) in the other basis: the two span the
    same functions."""
    groups, e, shift = 3, 4, 4
    spherical = GroupCG(groups, e, shift).double()
    cartesian = CartesianGroupCoupling(groups, e, [1, 2], [1, 2], [1, 2], shift=shift).double()
    q = {r: spherical_from_compressed(r) for r in (1, 2)}
    g = torch.Generator().manual_seed(0)
    w = torch.randn(groups, len(SPARSE_PATHS), e, e, e, generator=g, dtype=torch.float64)
    signs = []
    for l1, l2, l3 in cartesian.paths:
        m = torch.einsum("ijk,ia,jb,kc->abc", unit_coupling(l1, l2, l3), q[l1].T, q[l2].T, q[l3].T)
        signs.append(float(torch.sign((m * gaunt(l1, l2, l3)).sum())))
    order = [SPARSE_PATHS.index(tuple(p)) for p in cartesian.paths]
    with torch.no_grad():
        cartesian.weight.copy_(w[:, order] * torch.tensor(signs).view(1, -1, 1, 1, 1))
    a, b = features(5, groups * e, 2, 1), features(5, groups * e, 2, 2)

    def spherical_layout(x):  # [N, C, 2l+1] per rank -> [N, 8, C]
        return torch.cat([x[1] @ q[1].T, x[2] @ q[2].T], dim=2).transpose(1, 2)

    expected = spherical.transform(
        spherical_layout(a), spherical_layout(b), w.reshape(1, groups, -1)
    )
    out = cartesian(a, b)
    assert torch.equal(out[0], torch.zeros_like(out[0]))
    assert torch.allclose(spherical_layout(out), expected, atol=1e-12)


def own_and_edges(seed: int, max_rank: int = 3):
    return features(3, 4, max_rank, seed), features(3, 5, 2, seed + 10)


@pytest.mark.parametrize("odd", [False, True])
def test_abstract_edge_layer_keeps_the_parity_of_its_features(odd):
    """A' is a true tensor under rotations and reflections, also with odd paths: their
    pseudotensors (which do change sign under a reflection) are carried back by a second odd
    product. Ranks above max_rank pass unchanged."""
    layer = AbstractEdgeCoupling(5, 2, 2, max_rank=2, node_max_rank=2, odd=odd, shift=2).double()
    seen = []
    if odd:
        layer.odd.register_forward_hook(lambda m, i, o: seen.append(o))
    a, h = own_and_edges(0)
    rotation = -random_rotation(7)
    out = layer(a, h)
    moved = layer(transformed(a, rotation), transformed(h, rotation))
    assert torch.equal(out[3], a[3])
    for rank, (x, y) in enumerate(zip(transformed(out, rotation), moved)):
        assert torch.allclose(x, y, atol=TOL), rank
        assert rank > 2 or not torch.allclose(out[rank], a[rank], atol=1e-3)  # it acted
    if odd:
        before, after = seen
        for rank in layer.odd.reached:  # pseudotensors: -D(R) under a reflection
            assert torch.allclose(after[rank], -(before[rank] @ rank_matrix(rotation, rank).T))
    else:
        assert layer.odd is None


def test_first_layer_has_no_odd_paths():
    """With scalar own features an odd product has no path (it needs l2 >= 1)."""
    layer = AbstractEdgeCoupling(5, 2, 2, max_rank=3, node_max_rank=0, odd=True)
    assert layer.odd is None and all(p.l2 == 0 for p in layer.even.paths)
