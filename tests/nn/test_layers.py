"""Layers L1-L3 of ICTP spec section 7, and the batched products against the reference product."""

from __future__ import annotations

import pytest
import torch

from tensorpot.nn.convolution import PairGraph
from tensorpot.nn.interaction import Interaction
from tensorpot.nn.linear import RankLinear, SpeciesLinear
from tensorpot.nn.product_basis import PathSummation, ProductBasis
from tensorpot.nn.tensor_product import EdgeTensorProduct, NodeTensorProduct
from tensorpot.tensors import (
    compressed_harmonics,
    from_compressed,
    ict_product,
    product_paths,
    stf_basis,
    to_compressed,
)
from tests.conftest import random_rotation, rotate_tensor

TOL = 1e-11
F64 = torch.float64


def wigner(rank: int, rot: torch.Tensor) -> torch.Tensor:
    """The rotation in the compressed basis: ``D = U^T R^{(x)l} U`` (``[2l+1, 2l+1]``)."""
    u = stf_basis(rank)
    cols = rotate_tensor(u.T.reshape((2 * rank + 1,) + (3,) * rank), rot, rank)
    return u.T @ cols.reshape(2 * rank + 1, -1).T


def rotate(features: list[torch.Tensor], rot: torch.Tensor) -> list[torch.Tensor]:
    return [f @ wigner(rank, rot).T for rank, f in enumerate(features)]


def features(n: int, c: int, max_rank: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, 2 * r + 1, generator=g, dtype=F64) for r in range(max_rank + 1)]


def test_wigner_is_orthogonal_and_a_representation():
    r1, r2 = random_rotation(1), random_rotation(2)
    for rank in range(5):
        d1 = wigner(rank, r1)
        assert torch.allclose(d1 @ d1.T, torch.eye(2 * rank + 1, dtype=F64), atol=TOL)
        assert torch.allclose(wigner(rank, r1 @ r2), d1 @ wigner(rank, r2), atol=TOL)


@pytest.mark.parametrize("seed", [0, 1])
def test_l1_linear_maps_commute_with_rotations(seed):
    rot, species = random_rotation(seed), torch.tensor([0, 2, 1, 0])
    x = features(4, 3, 3, seed)
    layers = [RankLinear(3, 5, 3).double(), SpeciesLinear(3, 5, 3, 3, 3).double()]
    for layer in layers:
        args = (species,) if isinstance(layer, SpeciesLinear) else ()
        lhs = layer(rotate(x, rot), *args)
        rhs = rotate(layer(x, *args), rot)
        assert all(torch.allclose(a, b, atol=TOL) for a, b in zip(lhs, rhs))
    summation = PathSummation(3, 3, [2, 3, 1, 2], coupled=True).double()
    t = [f.unsqueeze(2).expand(-1, -1, p, -1) * 1.0 for f, p in zip(x, [2, 3, 1, 2])]
    lhs = summation([f @ wigner(r, rot).T for r, f in enumerate(t)], species)
    assert all(
        torch.allclose(a, b, atol=TOL) for a, b in zip(lhs, rotate(summation(t, species), rot))
    )


def test_l3_first_layer_self_connection_is_scalar_only():
    sc = SpeciesLinear(3, 3, 2, in_max_rank=0, out_max_rank=2).double()
    out = sc(features(5, 3, 0, 0), torch.tensor([0, 1, 1, 0, 1]))
    assert [o.shape[-1] for o in out] == [1, 3, 5]
    assert out[0].abs().max() > 0 and all(torch.count_nonzero(o) == 0 for o in out[1:])


def _edge_setup(seed: int):
    g = torch.Generator().manual_seed(seed)
    vectors = torch.randn(12, 3, generator=g, dtype=F64)
    edge_index = torch.stack([torch.arange(12) % 4, (torch.arange(12) + 1) % 4])
    return vectors, edge_index


@pytest.mark.parametrize("parity", [False, True])
def test_l2_interaction_and_product_basis_equivariant(parity):
    rot = -torch.eye(3, dtype=F64) if parity else random_rotation(5)
    vectors, edge_index = _edge_setup(3)
    species = torch.tensor([0, 1, 0, 1])
    inter = Interaction(
        3, 2, 2, node_max_rank=2, edge_max_rank=3, out_max_rank=2,
        num_radial_basis=4, radial_mlp=[8], avg_num_neighbors=3.0,
    ).double()  # fmt: skip
    basis = ProductBasis(2, 2, max_rank=3, out_max_rank=2, correlation=3).double()
    radial = torch.rand(12, 4, dtype=F64)
    h = features(4, 3, 2, 7)

    def run(vec, h_in):
        y = torch.cat(compressed_harmonics(vec, 3), dim=-1)
        a, sc = inter(h_in, species, y, radial, PairGraph.from_edges(edge_index))
        return a, sc, basis(a, species)

    outs = run(vectors, h)
    outs_rot = run(vectors @ rot.T, rotate(h, rot))
    for plain, rotated in zip(outs, outs_rot):
        assert all(torch.allclose(b, a, atol=TOL) for a, b in zip(rotate(plain, rot), rotated))
    if parity:  # under inversion a rank-l block changes by (-1)^l
        for rank, block in enumerate(outs[2]):
            assert torch.allclose(outs_rot[2][rank], (-1) ** rank * block, atol=TOL)


@pytest.mark.parametrize("symmetric", [False, True])
def test_node_product_matches_reference_and_folding(symmetric):
    paths = product_paths(2, 2, 3, symmetric=symmetric)
    g = torch.Generator().manual_seed(11)
    slots = [2, 3, 1]
    x = [torch.randn(3, 2, p, 2 * r + 1, generator=g, dtype=F64) for r, p in enumerate(slots)]
    a = features(3, 2, 2, 12)
    step = NodeTensorProduct(paths, slots, 2, 3).double()
    out = step(x, torch.cat(a, dim=-1))
    for l3 in range(4):
        expected = []
        for p in (p for p in paths if p.l3 == l3):
            full = ict_product(
                from_compressed(x[p.l1], p.l1), from_compressed(a[p.l2], p.l2).unsqueeze(2), *p
            )
            expected.append(to_compressed(full, l3))
        assert torch.allclose(out[l3], torch.cat(expected, dim=2), atol=TOL)
    weights = [torch.randn(3, 2, p, generator=g, dtype=F64) for p in step.out_multiplicities]
    folded = step.weighted(x, torch.cat(a, dim=-1), weights)
    explicit = [(t * w.unsqueeze(-1)).sum(2) for t, w in zip(out, weights)]
    assert all(torch.allclose(f, e, atol=TOL) for f, e in zip(folded, explicit))


def test_edge_product_matches_reference():
    paths = product_paths(2, 3, 3)
    g = torch.Generator().manual_seed(13)
    x = features(6, 2, 2, 14)
    vectors = torch.randn(6, 3, generator=g, dtype=F64)
    y = compressed_harmonics(vectors, 3)
    product = EdgeTensorProduct(paths, 2, 3, 3).double()
    per_rank: list[list[torch.Tensor]] = [[] for _ in range(4)]
    for blocks, spec in zip(product(x, torch.cat(y, dim=-1)), product.blocks):
        for block, (l3, _, _) in zip(blocks, spec):
            per_rank[l3].append(block.permute(0, 3, 2, 1))  # [E, C, P, 2l3+1]
    for l3 in range(4):
        expected = []
        for p in (p for p in paths if p.l3 == l3):
            full = ict_product(
                from_compressed(x[p.l1], p.l1), from_compressed(y[p.l2], p.l2).unsqueeze(1), *p
            )
            expected.append(to_compressed(full, l3))
        assert torch.allclose(torch.cat(per_rank[l3], dim=2), torch.stack(expected, 2), atol=TOL)


@pytest.mark.parametrize(
    "max_rank,out_rank,correlation,symmetric",
    [(1, 1, 4, False), (1, 0, 3, True), (2, 2, 3, False), (2, 0, 3, True), (3, 3, 2, False)],
)
def test_dense_product_steps_equal_block_sparse(
    max_rank, out_rank, correlation, symmetric, monkeypatch
):
    """Every step as one dense product gives the block-sparse result, and its derivatives."""
    import tensorpot.nn.product_basis as pb

    def build(dense: bool) -> ProductBasis:
        monkeypatch.setattr(pb, "use_dense", lambda step: dense)
        torch.manual_seed(3)
        return ProductBasis(3, 2, max_rank, out_rank, correlation, symmetric=symmetric).double()

    dense, sparse = build(True), build(False)
    assert all(dense.dense) and not any(sparse.dense)
    species = torch.tensor([0, 1, 1, 0, 1])
    a = [f.requires_grad_() for f in features(5, 3, max_rank, 21)]
    out_d, out_s = dense(a, species), sparse(a, species)
    assert all(torch.allclose(d, s, atol=TOL) for d, s in zip(out_d, out_s))
    probe = features(5, 3, out_rank, 22)
    grads = []
    for out in (out_d, out_s):
        g = torch.autograd.grad(
            sum((o * p).sum() for o, p in zip(out, probe)), a, create_graph=True
        )
        grads.append((g, torch.autograd.grad(sum((x**2).sum() for x in g), a)))
    (g_d, gg_d), (g_s, gg_s) = grads
    assert all(torch.allclose(d, s, atol=TOL) for d, s in zip(g_d, g_s))
    assert all(torch.allclose(d, s, atol=1e-9) for d, s in zip(gg_d, gg_s))
