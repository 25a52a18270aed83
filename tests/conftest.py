"""Shared fixtures: random rotations, and a guard that no test changes torch's default dtype."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25)
settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _default_dtype_unchanged():
    before = torch.get_default_dtype()
    yield
    assert torch.get_default_dtype() == before, "a test changed torch's global default dtype"


def random_rotation(seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A random proper rotation matrix (QR of a Gaussian matrix, sign-fixed, det +1)."""
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q.to(dtype)


def rotate_tensor(t: torch.Tensor, rot: torch.Tensor, rank: int) -> torch.Tensor:
    """Apply ``R^{(x)l}`` to the last ``rank`` Cartesian axes of ``t``."""
    for k in range(rank):
        axis = t.dim() - rank + k
        t = torch.tensordot(t, rot, dims=([axis], [1])).movedim(-1, axis)
    return t
