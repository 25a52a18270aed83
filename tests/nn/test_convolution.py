"""The fused convolution against the same sum written with plain operations."""

from __future__ import annotations

import pytest
import torch

from tensorpot.nn.convolution import PairGraph, convolution
from tensorpot.nn.tensor_product import EdgeTensorProduct
from tensorpot.tensors import compressed_harmonics, product_paths

F64 = torch.float64


def _case(max_l1, max_l2, seed=0):
    """Pairs ``u -> v`` of random nodes; most also hold the reverse edge ``v -> u``, two do
    not (lone edges), and one is a node with itself (a periodic image)."""
    g = torch.Generator().manual_seed(seed)
    num_nodes, num_pairs, channels = 5, 9, 3
    first = torch.randint(0, num_nodes, (2, num_pairs), generator=g)
    first[:, 2] = 4  # u == v
    reverse = torch.ones(num_pairs, dtype=torch.bool)
    reverse[[0, 5]] = False
    back = torch.nonzero(reverse).flatten()
    edge_index = torch.cat([first, first[:, back].flip(0)], dim=1)  # [2, E]
    edge_pair = torch.cat([torch.arange(num_pairs), back])
    paths = product_paths(max_l1, max_l2, max_l2)
    product = EdgeTensorProduct(paths, max_l1, max_l2, max_l2).double()
    h = [
        torch.randn(num_nodes, channels, 2 * r + 1, generator=g, dtype=F64, requires_grad=True)
        for r in product.ranks_l1
    ]
    vectors = torch.randn(num_pairs, 3, generator=g, dtype=F64, requires_grad=True)  # first edges
    radial = torch.randn(num_pairs, len(paths), channels, generator=g, dtype=F64)
    radial.requires_grad_(True)
    pairs = PairGraph.from_edges(edge_index, torch.arange(num_pairs), edge_pair)
    groups = tuple((l1, tuple(s)) for l1, s in zip(product.ranks_l1, product.blocks))
    return product, edge_index, edge_pair, back, h, vectors, radial, pairs, groups


def _plain(product, edge_index, edge_pair, back, h, vectors, radial):
    """Edge by edge: the reverse edges with their own (negated) vectors and harmonics."""
    edge_vectors = torch.cat([vectors, -vectors[back]])
    y = torch.cat(compressed_harmonics(edge_vectors, max(p.l2 for p in product.paths)), -1)
    x = [None] * (max(product.ranks_l1) + 1)
    for l1, h_l in zip(product.ranks_l1, h):
        x[l1] = h_l[edge_index[1]]
    weights = radial[edge_pair]
    out = []
    for blocks, spec in zip(product(x, y), product.blocks):
        for m, (_, count, first) in zip(blocks, spec):
            m = m * weights[:, None, first : first + count]  # [E, 2l3+1, P, C]
            out.append(m.new_zeros((h[0].shape[0],) + m.shape[1:]).index_add_(0, edge_index[0], m))
    return out


def _fused(product, h, vectors, radial, pairs, groups):
    y = torch.cat(compressed_harmonics(vectors, max(p.l2 for p in product.paths)), -1)
    yk = product.channel_free(y)
    return convolution(h, yk, radial, pairs, product.reverse_signs(), groups)


@pytest.mark.parametrize("chunk_bytes", [None, 1000, "no-keep"])
@pytest.mark.parametrize("max_l1,max_l2", [(0, 2), (1, 1), (2, 3)])
def test_fused_equals_plain_with_gradients_and_second_derivatives(
    max_l1, max_l2, chunk_bytes, monkeypatch
):
    if chunk_bytes == "no-keep":  # one chunk whose messages are recomputed
        monkeypatch.setattr("tensorpot.nn.convolution.KEEP_BYTES", 0)
    elif chunk_bytes is not None:  # edges in several chunks
        monkeypatch.setattr("tensorpot.nn.convolution.CHUNK_BYTES", chunk_bytes)
    product, edge_index, edge_pair, back, h, vectors, radial, pairs, groups = _case(max_l1, max_l2)
    fused = _fused(product, h, vectors, radial, pairs, groups)
    plain = _plain(product, edge_index, edge_pair, back, h, vectors, radial)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(fused, plain))
    g = torch.Generator().manual_seed(1)
    probes = [torch.randn(a.shape, generator=g, dtype=F64) for a in fused]
    inputs = [*h, vectors, radial]

    def scalar(outs):
        return sum((o * p).sum() for o, p in zip(outs, probes))

    # first derivatives (forces), kept differentiable, then a second derivative (training)
    d_fused = torch.autograd.grad(scalar(fused), inputs, create_graph=True)
    d_plain = torch.autograd.grad(scalar(plain), inputs, create_graph=True)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(d_fused, d_plain))
    # without create_graph (forces at inference): the kept messages, if any, are used
    fused = _fused(product, h, vectors, radial, pairs, groups)
    d_inference = torch.autograd.grad(scalar(fused), inputs)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(d_inference, d_plain))
    dd_fused = torch.autograd.grad(d_fused[-2].pow(2).sum(), inputs)
    dd_plain = torch.autograd.grad(d_plain[-2].pow(2).sum(), inputs)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(dd_fused, dd_plain))


def test_gradcheck(monkeypatch):
    monkeypatch.setattr("tensorpot.nn.convolution.CHUNK_BYTES", 2000)
    product, _, _, _, h, vectors, radial, pairs, groups = _case(1, 1, seed=3)

    def f(*args):
        return tuple(_fused(product, list(args[:-2]), *args[-2:], pairs, groups))

    assert torch.autograd.gradcheck(f, (*h, vectors, radial))
    assert torch.autograd.gradgradcheck(f, (*h, vectors, radial))


def test_pairs_from_edges():
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 0, 0, 2]])
    pairs = PairGraph.from_edges(edge_index, torch.tensor([0, 2]), torch.tensor([0, 0, 1, 1]))
    assert pairs.nodes.tolist() == [0, 1, 2, 0]
    assert pairs.sources.tolist() == [1, 0, 0, 2]
    assert pairs.reverse.tolist() == [1.0, 1.0]
    alone = PairGraph.from_edges(edge_index)  # every edge a pair of its own
    assert alone.nodes.tolist() == [0, 1, 1, 0, 2, 0, 0, 2]
    assert alone.reverse.tolist() == [0.0] * 4
    with pytest.raises(ValueError, match="more than two edges"):
        PairGraph.from_edges(edge_index, torch.tensor([0]), torch.tensor([0, 0, 0, 0]))
