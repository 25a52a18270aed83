"""Shared fixtures: random rotations, and a guard that no test changes torch's default dtype."""

from __future__ import annotations

import pytest
import torch
from hypothesis import settings

from tensorpot.tensors import from_compressed, to_compressed

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


def rank_matrix(rotation: torch.Tensor, rank: int) -> torch.Tensor:
    """``D_l(R) [2l+1, 2l+1]`` on compressed coordinates: ``U^T R^{(x)l} U`` (a true tensor's;
    an improper ``R`` gives the factor ``(-1)^l``)."""
    eye = torch.eye(2 * rank + 1, dtype=torch.float64)
    moved = rotate_tensor(from_compressed(eye, rank), rotation, rank)
    return to_compressed(moved, rank).T  # column k: the image of basis vector k
