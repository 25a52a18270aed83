"""The CPU kernel as PyTorch operators (:mod:`tensorpot.nn.operators`): their registrations
(``torch.library.opcheck``: schema, fake implementation, autograd) and their derivatives of
first and second order, the backward operators' own included (float64 gradcheck)."""

from __future__ import annotations

import shutil

import pytest
import torch

from tensorpot.nn import cpu_kernel
from tensorpot.nn.convolution import _rows_by_node
from tensorpot.nn.visnet import GroupCG

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None or shutil.which("ninja") is None,
    reason="no C++ compiler and ninja to build the CPU kernel",
)

ops = torch.ops.tensorpot
F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def library():
    assert cpu_kernel.load() is not None


def convolution_inputs(dtype=F64, seed=0, requires_grad=True):
    """Pairs of random nodes (some lone, one a node with itself), two groups of node ranks 0
    and 1, as ``tensorpot::convolution`` takes them."""
    g = torch.Generator().manual_seed(seed)
    num_nodes, num_pairs, paths, channels = 5, 7, 4, 3
    first = torch.randint(0, num_nodes, (2, num_pairs), generator=g)
    first[:, 2] = 3
    nodes, sources = first.t().flatten(), first.flip(0).t().flatten()
    reverse = (torch.rand(num_pairs, generator=g) > 0.3).to(dtype)
    order, offsets = _rows_by_node(nodes, num_nodes)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(requires_grad)

    radial = rand(num_pairs, paths, channels)
    hT = [rand(num_nodes, 1, channels), rand(num_nodes, 3, channels)]
    yk = [rand(num_pairs, 4, 1), rand(num_pairs, 6, 3)]
    cols = [torch.randint(0, paths, (4,), generator=g), torch.randint(0, paths, (6,), generator=g)]
    sign = [torch.where(torch.rand(q, generator=g) > 0.5, 1.0, -1.0).to(dtype) for q in (4, 6)]
    return (nodes, sources, reverse, radial, order, offsets), hT, yk, cols, sign


def group_cg_inputs(dtype=F64, groups=2, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    module = GroupCG(groups, 8).to(dtype)
    a, b = (torch.randn(3, 8, 8 * groups, generator=g, dtype=dtype) for _ in range(2))
    weight = torch.randn(module.weight.shape, generator=g, dtype=dtype)
    cg = module.coefficients()
    arranged = ops.group_cg_weights(weight, cg, groups)
    for t in (a, b, weight):
        t.requires_grad_(requires_grad)
    return a, b, weight, arranged, cg


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_opcheck(dtype):
    """Schema, fake implementation (shapes, also traced), autograd registration and
    ``aot_autograd`` of every operator."""
    graph, hT, yk, cols, sign = convolution_inputs(dtype)
    torch.library.opcheck(ops.convolution, (*graph, hT, yk, cols, sign))
    grads = [torch.randn(5, y.shape[1], 3, dtype=dtype) for y in yk]
    for flags in ([True, False], [False, True]):
        torch.library.opcheck(
            ops.convolution_backward,
            (*graph, hT, yk, cols, sign, grads, flags, flags[::-1], flags[0]),
        )
    x, w = torch.randn(13, 5, dtype=dtype, requires_grad=True), torch.randn(5, 7, dtype=dtype)
    torch.library.opcheck(ops.matmul, (x, w))
    a, b, weight, arranged, cg = group_cg_inputs(dtype, groups=3)
    torch.library.opcheck(ops.group_cg_weights, (weight.detach(), cg, 3))
    torch.library.opcheck(ops.group_cg, (a, b, weight, arranged, cg, 3, 1))
    grad = torch.randn_like(a)
    for flags in ((True, False, True), (False, True, False)):
        torch.library.opcheck(
            ops.group_cg_backward, (a, b, weight, arranged, cg, 3, 1, grad, *flags)
        )


def test_convolution_first_and_second_derivatives():
    """gradcheck and gradgradcheck (in fast mode: random directions, rather than every input
    element's): the latter differentiates ``convolution_backward`` (to the features,
    couplings, radial weights and the output's cotangent)."""
    graph, hT, yk, cols, sign = convolution_inputs()

    def f(radial, h0, h1, y0, y1):
        return tuple(ops.convolution(*graph[:3], radial, *graph[4:], [h0, h1], [y0, y1], cols,
                                     sign))  # fmt: skip

    inputs = (graph[3], *hT, *yk)
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)
    assert torch.autograd.gradgradcheck(f, inputs, fast_mode=True)


def test_group_cg_first_and_second_derivatives():
    a, b, weight, _, cg = group_cg_inputs(groups=2)

    def f(a, b, weight):
        arranged = ops.group_cg_weights(weight.detach(), cg, 2)
        return ops.group_cg(a, b, weight, arranged, cg, 2, 1)

    assert torch.autograd.gradcheck(f, (a, b, weight), fast_mode=True)
    assert torch.autograd.gradgradcheck(f, (a, b, weight), fast_mode=True)


def test_matmul_first_and_second_derivatives():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(9, 4, generator=g, dtype=F64, requires_grad=True)
    w = torch.randn(4, 6, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(ops.matmul, (x, w))
    assert torch.autograd.gradgradcheck(ops.matmul, (x, w))


def test_third_derivative_of_the_group_cg_equals_pytorch():
    """The backward operator's derivative is the operators again, so a third derivative runs
    through them too and equals that of the PyTorch operations."""
    a, b, weight, _, cg = group_cg_inputs(groups=1)
    module = GroupCG(1, 8, shift=0).double().eval()
    module.cpu_kernel = True
    with torch.no_grad():
        module.weight.copy_(weight)
    results = []
    for run in (module, lambda x, y: module.transform(x, y, module.weight)):
        out = run(a, b).pow(2).sum()
        (da,) = torch.autograd.grad(out, a, create_graph=True)
        (dda,) = torch.autograd.grad(da.pow(2).sum(), b, create_graph=True)
        results.append(torch.autograd.grad(dda.sum(), [a, b, module.weight]))
    for ours, ref in zip(*results):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)


def test_checks_refuse_other_devices_and_mixed_dtypes():
    x = torch.randn(4, 3, dtype=F64)
    with pytest.raises(RuntimeError, match="one dtype"):
        ops.matmul(x, torch.randn(3, 2, dtype=torch.float32))
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ops.matmul(x.half(), torch.randn(3, 2).half())
    assert not cpu_kernel.applies(True, torch.zeros(2, dtype=torch.float16))
    assert not cpu_kernel.applies(True, torch.zeros(2), torch.zeros(2, dtype=F64))
    assert not cpu_kernel.applies(True, torch.zeros(2, device="meta"))
    assert not cpu_kernel.applies(False, torch.zeros(2))
    assert cpu_kernel.applies(True, torch.zeros(2), torch.zeros(2))
