"""The radial MLP's products by the CPU kernel (:func:`tensorpot.nn.radial.matmul`) against
PyTorch's, with their first and second derivatives."""

from __future__ import annotations

import shutil

import pytest
import torch

from tensorpot.nn import cpu_kernel
from tensorpot.nn.radial import RadialMLP, matmul

pytestmark = pytest.mark.skipif(
    shutil.which("c++") is None or shutil.which("ninja") is None,
    reason="no C++ compiler and ninja to build the CPU kernel",
)


@pytest.fixture(autouse=True)
def kernel_on():
    assert cpu_kernel.load() is not None


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-13), (torch.float32, 1e-5)])
@pytest.mark.parametrize("rows", [1, 5, 6, 7, 100])
@pytest.mark.parametrize("cols", [1, 3, 4, 5, 8, 13, 16, 40, 64])
def test_products_equal_pytorch(rows, cols, dtype, rtol):
    """Every split of the rows into blocks of six and of the columns into vectors and a tail."""
    g = torch.Generator().manual_seed(rows * 100 + cols)
    x = torch.randn(rows, 11, generator=g, dtype=dtype)
    w = torch.randn(11, cols, generator=g, dtype=dtype)
    out = torch.ops.tensorpot.matmul(x, w)
    assert out.shape == (rows, cols)
    torch.testing.assert_close(out, x @ w, rtol=rtol, atol=rtol * 10)
    torch.testing.assert_close(matmul(x, w, kernel=True), x @ w, rtol=rtol, atol=rtol * 10)


def test_first_and_second_derivatives_equal_pytorch():
    """Forces (first) and Hessians (second derivatives) through the kernel's product, with a
    constant weight, equal those through PyTorch's."""
    g = torch.Generator().manual_seed(0)
    r = torch.rand(50, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.randn(8, 24, generator=g, dtype=torch.float64)

    def energy(product):
        x = torch.stack([torch.sin(k * r) for k in range(1, 9)], dim=1)  # [50, 8]
        return torch.tanh(product(x, w)).sum()

    results = []
    for product in (lambda x, w: matmul(x, w, kernel=True), torch.matmul):
        (grad,) = torch.autograd.grad(energy(product), r, create_graph=True)
        (hess,) = torch.autograd.grad(grad.sum(), r)
        (plain,) = torch.autograd.grad(energy(product), r)  # no graph: the kernel's backward
        results.append((grad.detach(), hess, plain))
    for ours, ref in zip(results[0], results[1]):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_trainable_weight_uses_pytorch_and_gets_its_gradient():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(8, 16, generator=g, dtype=torch.float64, requires_grad=True)
    out = matmul(x, w, kernel=True)
    assert out.grad_fn.name() == "MmBackward0"
    (gw,) = torch.autograd.grad(out.sum(), w)
    torch.testing.assert_close(gw, x.detach().t() @ torch.ones(30, 16, dtype=torch.float64))


def test_frozen_radial_mlp_equals_trainable_one():
    torch.manual_seed(2)
    mlp = RadialMLP([8, 64, 64, 40]).double()
    cpu_kernel.choose(mlp, True)
    x = torch.randn(200, 8, dtype=torch.float64, requires_grad=True)
    ref = mlp(x)
    (ref_grad,) = torch.autograd.grad(ref.square().sum(), x)
    mlp.requires_grad_(False)
    out = mlp(x)
    assert "tensorpot_matmul" in out.grad_fn.name()
    (grad,) = torch.autograd.grad(out.square().sum(), x)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)
