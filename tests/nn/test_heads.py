"""The output heads alone: charge conservation, reductions, shapes."""

from __future__ import annotations

import torch

from tensorpot.nn.heads import DipoleHead, PolarizabilityHead, PropertyHead


def _inputs(n=7, s=5, v=4, t=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    scalars = torch.randn(n, s, generator=g, dtype=torch.float64)
    vectors = torch.randn(n, v, 3, generator=g, dtype=torch.float64)
    tensors = torch.randn(n, t, 3, 3, generator=g, dtype=torch.float64)
    tensors = tensors + tensors.transpose(-1, -2)
    tensors = tensors - tensors.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None] * torch.eye(
        3, dtype=torch.float64
    )
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2])
    return scalars, vectors, tensors, batch


def test_charges_sum_to_the_total_charge():
    scalars, _, _, batch = _inputs()
    head = DipoleHead(5, 4).double()
    total = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    q = head.charges(scalars, batch, 3, total)
    sums = torch.zeros(3, dtype=torch.float64).index_add_(0, batch, q)
    torch.testing.assert_close(sums, total)


def test_dipole_is_measured_from_the_centre_of_positions():
    """Independent of the origin, and equal to sum_u q_u (r_u - r_c) + p_u with the charges
    shifted to any total charge (a uniform shift sums to zero about the centre)."""
    scalars, vectors, _, batch = _inputs()
    head = DipoleHead(5, 4).double()
    positions = torch.randn(7, 3, dtype=torch.float64)
    mu = head(scalars, vectors, positions, batch, 3)
    shifted = head(scalars, vectors, positions + torch.tensor([5.0, 0.0, -2.0]), batch, 3)
    torch.testing.assert_close(mu, shifted)
    total = torch.tensor([1.0, 0.0, 3.0], dtype=torch.float64)
    q = head.charges(scalars, batch, 3, total)
    count = torch.zeros(3, dtype=torch.float64).index_add_(0, batch, torch.ones(7).double())
    centre = torch.zeros(3, 3, dtype=torch.float64).index_add_(0, batch, positions) / count[:, None]
    p = head.atomic_dipole(vectors.transpose(1, 2)).squeeze(-1)
    expected = torch.zeros(3, 3, dtype=torch.float64).index_add_(
        0, batch, q[:, None] * (positions - centre[batch]) + p
    )
    torch.testing.assert_close(mu, expected)


def test_polarizability_is_symmetric_with_an_isotropic_part():
    scalars, _, tensors, batch = _inputs()
    alpha = PolarizabilityHead(5, 3).double()(scalars, tensors, batch, 3)
    torch.testing.assert_close(alpha, alpha.transpose(1, 2))
    assert alpha.shape == (3, 3, 3)


def test_property_sum_and_mean():
    scalars, _, _, batch = _inputs()
    total = PropertyHead(5, "sum", shift=2.0).double()
    mean = PropertyHead(5, "mean", shift=2.0).double()
    mean.load_state_dict(total.state_dict())
    counts = torch.tensor([3.0, 2.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(total(scalars, batch, 3) / counts, mean(scalars, batch, 3))
    with torch.no_grad():
        for p in total.parameters():
            p.zero_()
    torch.testing.assert_close(total(scalars, batch, 3), 2.0 * counts)
