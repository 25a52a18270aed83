"""ViSNet's blocks: the group CG against e3nn and its equivariance, the vector norm, the radial
basis."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from tensorpot.nn.visnet import ExpNormalBasis, GroupCG, VectorNorm, channel_norm, cosine_cutoff
from tests.conftest import random_rotation
from tests.tensors.test_spherical import wigner_d


def features(n: int, channels: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 8, channels, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["proper", "improper"])
def test_group_cg_is_o3_equivariant(sign):
    """GroupCG(D a, D b) = D GroupCG(a, b), rotations and reflections (degree 1 odd, 2 even)."""
    cg = GroupCG(num_groups=3, edges_per_group=4).double()
    with torch.no_grad():
        cg.weight.normal_()
    rotation = random_rotation(5)
    d = wigner_d(rotation)
    parity = torch.tensor([sign] * 3 + [1.0] * 5, dtype=torch.float64)
    d = d * parity[:, None]
    a, b = features(4, 12, 0), features(4, 12, 1)
    moved = cg(torch.einsum("ij,njc->nic", d, a), torch.einsum("ij,njc->nic", d, b))
    assert torch.allclose(moved, torch.einsum("ij,njc->nic", d, cg(a, b)), atol=1e-12)


@pytest.mark.skipif(
    importlib.util.find_spec("e3nn") is None, reason="e3nn not installed (dev extra)"
)
def test_group_cg_equals_e3nn_per_group():
    """Each group is e3nn's FullyConnectedTensorProduct('Ex1o+Ex2e' x 2 -> 'Ex1o+Ex2e') with
    that group's weights (FreeCG spec 3.3)."""
    torch.serialization.add_safe_globals([slice])  # e3nn 0.4.4 under torch >= 2.6
    from e3nn import o3

    groups, e = 3, 4
    cg = GroupCG(groups, e).double()
    with torch.no_grad():
        cg.weight.normal_()
    irreps = f"{e}x1o + {e}x2e"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # e3nn makes its coefficients in the default dtype
    try:
        tp = o3.FullyConnectedTensorProduct(irreps, irreps, irreps, shared_weights=False)
    finally:
        torch.set_default_dtype(previous)
    a, b = features(5, groups * e, 2), features(5, groups * e, 3)

    def pack(x):  # [N, 8, G E] -> [N, G, E*3 + E*5], e3nn's layout per group
        x = x.reshape(5, 8, groups, e).permute(0, 2, 3, 1)
        return torch.cat([x[..., :3].reshape(5, groups, -1), x[..., 3:].reshape(5, groups, -1)], -1)

    expected = tp(pack(a), pack(b), cg.weight.expand(5, -1, -1))
    assert torch.allclose(pack(cg(a, b)), expected, atol=1e-12)


def test_group_cg_coefficients_follow_the_dtype():
    cg = GroupCG(2, 8)
    assert cg.cg0.dtype == torch.float32
    exact = cg.double().cg0
    assert exact.dtype == torch.float64
    assert abs(float(exact.norm()) - math.sqrt(5 / 128)) < 1e-15  # alpha_2 for E = 8


def test_channel_norm_has_finite_second_derivatives_at_zero():
    v = torch.zeros(2, 8, 3, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(channel_norm(v).sum(), v, create_graph=True)
    (second,) = torch.autograd.grad(grad.sum(), v)
    assert torch.isfinite(grad).all() and torch.isfinite(second).all()
    w = torch.randn(2, 8, 3, dtype=torch.float64)
    assert torch.allclose(channel_norm(w), w.norm(dim=1))


@pytest.mark.parametrize("kind", ["none", "max_min", "rms"])
def test_vector_norm_is_equivariant(kind):
    norm = VectorNorm(6, kind).double()
    d = wigner_d(random_rotation(8))
    v = features(3, 6, 4)
    assert torch.allclose(
        norm(torch.einsum("ij,njc->nic", d, v)), torch.einsum("ij,njc->nic", d, norm(v)), atol=1e-12
    )


def test_max_min_norm_maps_channel_norms_to_the_unit_interval():
    n = VectorNorm(6, "max_min").double()(features(3, 6, 5))
    for block in (slice(0, 3), slice(3, 8)):
        norms = n[:, block].norm(dim=1)
        assert torch.allclose(norms.amax(-1), torch.ones(3, dtype=torch.float64))
        assert torch.allclose(norms.amin(-1), torch.zeros(3, dtype=torch.float64))


def test_expnormal_basis_vanishes_smoothly_at_the_cutoff():
    basis = ExpNormalBasis(5.0, 16).double()
    d = torch.tensor([0.0, 2.5, 5.0 - 1e-7, 5.0, 6.0], dtype=torch.float64)
    phi = basis(d)
    assert phi.shape == (5, 16) and phi[0].abs().sum() > 0
    assert phi[2].abs().max() < 1e-12 and torch.equal(
        phi[3:], torch.zeros(2, 16, dtype=torch.float64)
    )
    assert float(cosine_cutoff(torch.tensor(0.0), 5.0)) == 1.0


def test_dihedral_rejections_cancel_with_the_unnormalised_harmonics():
    """The official edge update's sum_m Rej(a, Y)_m Rej(b, -Y)_m (Rej(a, y) = a - y (y . a))
    is the plain a . b: |Y|^2 = 2 on real edges, Y = 0 on self-loops (why ViSMP computes
    the product alone)."""
    from tensorpot.tensors.spherical import spherical_harmonics_12

    g = torch.Generator().manual_seed(9)
    unit = torch.nn.functional.normalize(
        torch.randn(6, 3, generator=g, dtype=torch.float64), dim=-1
    )
    y = torch.cat([spherical_harmonics_12(unit), torch.zeros(1, 8, dtype=torch.float64)])
    a, b = features(7, 5, 6), features(7, 5, 7)

    def rej(v, y):
        return v - y.unsqueeze(-1) * (v * y.unsqueeze(-1)).sum(dim=1, keepdim=True)

    official = (rej(a, y) * rej(b, -y)).sum(dim=1)
    assert torch.allclose(official, (a * b).sum(dim=1), atol=1e-13)
    assert not torch.allclose(rej(a, y), a)  # each rejection alone does change its vector


@pytest.mark.parametrize("name", ["_NeighbourScaled", "_EdgeDot"])
def test_message_functions_have_exact_first_and_second_derivatives(name):
    """The fused gather-multiply(-scatter) functions against finite differences, to second
    order (training differentiates the forces)."""
    import tensorpot.nn.visnet as visnet

    g = torch.Generator().manual_seed(12)
    centre = torch.tensor([0, 0, 1, 2, 2, 3])
    neighbour = torch.tensor([1, 2, 0, 0, 3, 2])
    v = torch.randn(4, 8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    edges = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    fn = getattr(visnet, name).apply
    if name == "_NeighbourScaled":
        inputs, call = (v, edges), lambda a, b: fn(a, b, centre, neighbour)
    else:
        w = torch.randn(4, 8, 3, generator=g, dtype=torch.float64, requires_grad=True)
        inputs, call = (v, w), lambda a, b: fn(a, b, centre, neighbour)
    assert torch.autograd.gradcheck(call, inputs)
    assert torch.autograd.gradgradcheck(call, inputs)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("groups, shift", [(3, 0), (4, 8), (4, 16), (3, 16)])
def test_group_cg_kernel_equals_the_pytorch_operations(dtype, groups, shift):
    """Outside training the CPU kernel computes the group CG (8 abstract edges per group) with
    its channel shift, and its first derivatives, to the inputs and to the weights: the same
    numbers as the PyTorch operations (odd and even numbers of groups: the kernel packs two
    groups into a vector where it can). A second derivative runs through the operators and is
    exact too."""
    from tensorpot.nn import cpu_kernel

    if not cpu_kernel.available():
        pytest.skip("the CPU kernel is not available here")
    cg = GroupCG(groups, 8, shift).to(dtype).eval()
    cpu_kernel.choose(cg, True)
    with torch.no_grad():
        cg.weight.normal_()
    tol = 1e-12 if dtype == torch.float64 else 1e-4
    a, b = (features(5, 8 * groups, k).to(dtype).requires_grad_() for k in (10, 11))
    out, ref = cg(a, b), cg.transform(a, b, cg.weight)
    assert "tensorpot_group_cg" in out.grad_fn.name()
    assert torch.allclose(out, ref, atol=tol)
    grad = torch.randn_like(out)
    ours = torch.autograd.grad(out, [a, b, cg.weight], grad, retain_graph=True)
    theirs = torch.autograd.grad(ref, [a, b, cg.weight], grad, retain_graph=True)
    assert all(torch.allclose(x, y, atol=tol) for x, y in zip(ours, theirs))
    (ga,) = torch.autograd.grad(out.square().sum(), a, create_graph=True)
    (ga_ref,) = torch.autograd.grad(ref.square().sum(), a, create_graph=True)
    second = torch.autograd.grad(ga.sum(), [b, cg.weight])
    second_ref = torch.autograd.grad(ga_ref.sum(), [b, cg.weight])
    assert all(torch.allclose(x, y, atol=10 * tol) for x, y in zip(second, second_ref))
    with torch.no_grad():  # new weights: the kernel's arrangement of them is made again
        cg.weight.mul_(-2.0)
    assert torch.allclose(cg(a, b), cg.transform(a, b, cg.weight), atol=2 * tol)
    cg.train()
    assert cg(a, b).grad_fn.name() != out.grad_fn.name()  # training: the PyTorch operations
    other = GroupCG(2 * groups, 4).to(dtype).eval()
    cpu_kernel.choose(other, True)
    assert other(a, b).grad_fn.name() != out.grad_fn.name()  # 4 edges a group: PyTorch


def test_attention_enhancer_maps_atoms_before_the_gather():
    """``sum_m Y_m (W v_j)_m + b`` is FreeCG's ``W (sum_m v_jm Y_m) + b`` (spec 3.5)."""
    from tensorpot.nn.visnet import enhancer_logits

    g = torch.Generator().manual_seed(3)
    v = features(4, 6, 4)
    y = torch.randn(5, 8, generator=g, dtype=torch.float64)
    neighbour = torch.tensor([1, 0, 3, 2, 2])
    enhancer = torch.nn.Linear(6, 2).double()
    with torch.no_grad():
        enhancer.bias.normal_()
    direct = enhancer(torch.einsum("em,emf->ef", y, v[neighbour]))
    assert torch.allclose(enhancer_logits(enhancer, v, y, neighbour), direct, atol=1e-13)
