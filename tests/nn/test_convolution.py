"""The fused convolution against the same sum written with plain operations.

Each check runs twice: with the convolution's PyTorch operations and with the CPU kernel's
operators (:mod:`tensorpot.nn.cpu_kernel`)."""

from __future__ import annotations

import shutil

import pytest
import torch

import tensorpot
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.data.pairs import edge_pairs
from tensorpot.nn import cpu_kernel
from tensorpot.nn.convolution import PairGraph, convolution
from tensorpot.nn.tensor_product import EdgeTensorProduct
from tensorpot.tensors import compressed_harmonics, product_paths

F64 = torch.float64

COMPILER = shutil.which("c++") is not None and shutil.which("ninja") is not None


@pytest.fixture(params=["operations", "kernel"], autouse=True)
def kernel(request):
    """Every test of this module with each implementation of the convolution: whether the
    kernel's operators run."""
    if request.param == "kernel":
        if not COMPILER:
            pytest.skip("no C++ compiler and ninja to build the CPU kernel")
        assert cpu_kernel.load() is not None
    return request.param == "kernel"


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


def _fused(product, h, vectors, radial, pairs, groups, kernel):
    y = torch.cat(compressed_harmonics(vectors, max(p.l2 for p in product.paths)), -1)
    yk = product.channel_free(y)
    signs = [s.to(radial.dtype) for s in product.reverse_signs()]
    out = convolution(h, yk, radial, pairs, signs, groups, kernel=kernel)
    name = out[0]._base.grad_fn.name()  # the aggregate of which the blocks are views
    assert ("tensorpot_convolution" in name) == kernel, name  # the implementation asked for
    return out


@pytest.mark.parametrize("chunk_bytes", [None, 1000, "no-keep"])
@pytest.mark.parametrize("max_l1,max_l2", [(0, 2), (1, 1), (2, 3)])
def test_fused_equals_plain_with_gradients_and_second_derivatives(
    max_l1, max_l2, chunk_bytes, monkeypatch, kernel
):
    if chunk_bytes == "no-keep":  # one chunk whose messages are recomputed
        monkeypatch.setattr("tensorpot.nn.convolution.KEEP_BYTES", 0)
    elif chunk_bytes is not None:  # edges in several chunks
        monkeypatch.setattr("tensorpot.nn.convolution.CHUNK_BYTES", chunk_bytes)
    product, edge_index, edge_pair, back, h, vectors, radial, pairs, groups = _case(max_l1, max_l2)
    fused = _fused(product, h, vectors, radial, pairs, groups, kernel)
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
    fused = _fused(product, h, vectors, radial, pairs, groups, kernel)
    d_inference = torch.autograd.grad(scalar(fused), inputs)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(d_inference, d_plain))
    dd_fused = torch.autograd.grad(d_fused[-2].pow(2).sum(), inputs)
    dd_plain = torch.autograd.grad(d_plain[-2].pow(2).sum(), inputs)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(dd_fused, dd_plain))


def test_gradcheck(monkeypatch, kernel):
    monkeypatch.setattr("tensorpot.nn.convolution.CHUNK_BYTES", 2000)
    product, _, _, _, h, vectors, radial, pairs, groups = _case(1, 1, seed=3)

    def f(*args):
        return tuple(_fused(product, list(args[:-2]), *args[-2:], pairs, groups, kernel))

    # the kernel's operators in fast mode (random directions): each of their calls starts a
    # parallel region, which every input element's own check would pay many times
    assert torch.autograd.gradcheck(f, (*h, vectors, radial), fast_mode=kernel)
    assert torch.autograd.gradgradcheck(f, (*h, vectors, radial), fast_mode=kernel)


def test_pairs_from_edges():
    edge_index = torch.tensor([[0, 1, 2, 0], [1, 0, 0, 2]])
    pairs = PairGraph.from_edges(edge_index, torch.tensor([0, 2]), torch.tensor([0, 0, 1, 1]))
    assert pairs.nodes.tolist() == [0, 1, 2, 0]
    assert pairs.sources.tolist() == [1, 0, 0, 2]
    assert pairs.reverse.tolist() == [1.0, 1.0]
    alone = PairGraph.from_edges(edge_index)  # every edge a pair of its own
    assert alone.nodes.tolist() == [0, 1, 1, 0, 2, 0, 0, 2]
    assert alone.reverse.tolist() == [0.0] * 4
    duplicated = torch.tensor([[0, 1, 0], [1, 0, 1]])  # 0 -> 1 twice
    with pytest.raises(ValueError, match="more than two edges"):
        edge_pairs(duplicated, torch.zeros(3, 3), 2)


def test_kernel_is_chosen_once_where_it_builds(monkeypatch):
    """``build_model`` tells the model's modules whether to run the kernel: where it builds,
    unless ``TENSORPOT_CPU_KERNEL=0``; the forward pass reads that and nothing else."""
    config = {"model": "ictp", "r_max": 3.0, "num_channels": 4, "max_L": 1, "correlation": 2,
              "atomic_numbers": [1, 8], "avg_num_neighbors": 4.0, "radial_MLP": [8]}  # fmt: skip
    users = [m for m in tensorpot.build_model(config).modules() if hasattr(m, "cpu_kernel")]
    assert users and all(m.cpu_kernel is cpu_kernel.available() for m in users)
    if COMPILER:
        assert all(m.cpu_kernel for m in users)
    monkeypatch.setenv("TENSORPOT_CPU_KERNEL", "0")
    users = [m for m in tensorpot.build_model(config).modules() if hasattr(m, "cpu_kernel")]
    assert not any(m.cpu_kernel for m in users)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_model_forces_and_stress_equal_with_and_without_kernel(dtype, atol, kernel):
    """A whole ICTP (periodic cell, lone edges across a small cell's images included), frozen
    as for inference, so that the radial MLP's products run in the kernel too."""
    from ase.build import bulk

    if not kernel:
        pytest.skip("compares both implementations itself")
    config = {"model": "ictp", "r_max": 3.0, "num_channels": 4, "max_L": 2, "correlation": 2,
              "atomic_numbers": [13, 29], "avg_num_neighbors": 10.0, "dtype": str(dtype)[6:],
              "radial_MLP": [8]}  # fmt: skip
    torch.manual_seed(0)
    model = tensorpot.build_model(config).eval().requires_grad_(False)  # both kernels run
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 1)
    atoms.numbers[::3] = 13
    atoms.rattle(0.1, seed=1)
    batch = collate([atoms_to_graph(atoms, model.r_max)], dtype=dtype)
    out = {}
    for flag in ("0", "1"):
        cpu_kernel.choose(model, flag == "1")
        out[flag] = model(batch, compute_forces=True, compute_stress=True)
    assert torch.allclose(out["0"].energy, out["1"].energy, atol=atol)
    assert torch.allclose(out["0"].forces, out["1"].forces, atol=atol)
    assert torch.allclose(out["0"].stress, out["1"].stress, atol=atol)


def test_training_on_forces_runs_through_the_operators(kernel):
    """A force loss's gradient to the parameters (the derivative of the backward pass) through
    the kernel's operators equals that of the PyTorch operations."""
    from ase.build import molecule

    if not kernel:
        pytest.skip("compares both implementations itself")
    config = {"model": "ictp", "r_max": 3.0, "num_channels": 4, "max_L": 2, "correlation": 2,
              "atomic_numbers": [1, 6, 8], "avg_num_neighbors": 4.0, "radial_MLP": [8]}  # fmt: skip
    model = tensorpot.build_model(config).train()
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.05, seed=2)
    batch = collate([atoms_to_graph(atoms, model.r_max)], dtype=F64)
    grads = {}
    for flag in (False, True):
        cpu_kernel.choose(model, flag)
        out = model(batch, compute_forces=True)
        loss = out.forces.pow(2).sum() + out.energy.sum()
        grads[flag] = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    for ours, ref in zip(grads[True], grads[False]):
        assert (ours is None) == (ref is None)
        if ours is not None:
            torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
