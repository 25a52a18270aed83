r"""Irreducible Cartesian tensors of unit vectors ("Cartesian harmonics", ICTP Eq. (1)).

.. math::

    T^{(l)}(\hat r) = \frac{(2l-1)!!}{l!}\, \mathrm{STF}(\hat r^{\otimes l})

Normalisation: :math:`T^{(l)}(n)` contracted with :math:`n` on all slots is 1, with another unit
vector :math:`m` it is the Legendre polynomial :math:`P_l(n\cdot m)`, and
:math:`\|T^{(l)}(n)\|^2 = (2l-1)!!/l!`.

Two storages of a rank-:math:`l` symmetric traceless tensor:

- *full*: all :math:`3^l` components (trailing axes ``[3, ..., 3]``);
- *compressed*: :math:`2l+1` coordinates in the orthonormal basis :func:`stf_basis` of the STF
  subspace. The map is an isometry, so contractions of two STF tensors are the same in both.
  The models use the compressed storage (see ``benchmarks/storage.py`` for the comparison).
"""

from __future__ import annotations

import itertools
import math
from functools import cache

import torch
from torch import Tensor

from tensorpot.tensors.stf import double_factorial, stf_matrix


def harmonic_norm(rank: int) -> float:
    """The prefactor :math:`(2l-1)!!/l!` of Eq. (1)."""
    return double_factorial(2 * rank - 1) / math.factorial(rank)


def outer_power(n: Tensor, rank: int) -> Tensor:
    """:math:`n^{\\otimes l}` as ``[..., 3, ..., 3]`` (``rank`` trailing axes)."""
    out = torch.ones(n.shape[:-1], dtype=n.dtype, device=n.device)
    for k in range(rank):
        out = out.unsqueeze(-1) * n.reshape(n.shape[:-1] + (1,) * k + (3,))
    return out


def cartesian_harmonic(vectors: Tensor, rank: int) -> Tensor:
    """Full-storage :math:`T^{(l)}(\\hat r)` of Eq. (1) for any rank.

    Args:
        vectors: ``[..., 3]``, need not be normalised (only the direction enters).
        rank: the rank ``l``.

    Returns:
        ``[..., 3, ..., 3]`` with ``rank`` trailing axes.

    Example:
        >>> t = cartesian_harmonic(torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64), 2)
        >>> t[2, 2].item(), t[0, 0].item()
        (1.0, -0.5)
    """
    n = vectors / torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    flat = outer_power(n, rank).reshape(n.shape[:-1] + (3**rank,))
    proj = stf_matrix(rank).to(dtype=n.dtype, device=n.device)
    out = harmonic_norm(rank) * flat @ proj  # proj is symmetric
    return out.reshape(n.shape[:-1] + (3,) * rank)


def _independent_components(rank: int) -> list[tuple[int, int, int]]:
    """Index multisets ``(n_x, n_y, n_z)`` with ``n_z <= 1``: 2l+1 of them, fixing an STF tensor."""
    return [(rank - c - b, b, c) for c in (0, 1) for b in range(rank - c + 1)]


@cache
def stf_basis(rank: int) -> Tensor:
    """Orthonormal basis ``U`` of the rank-``l`` STF subspace, ``[3^l, 2l+1]`` float64 (cached).

    Built deterministically: the STF projections of the symmetric unit tensors of the
    components with at most one ``z`` index, orthonormalised by Gram-Schmidt (QR with a
    positive diagonal). For ``l = 1`` this is the identity (x, y, z).
    """
    proj = stf_matrix(rank)
    columns = []
    for counts in _independent_components(rank):
        e = torch.zeros((3,) * rank, dtype=torch.float64)
        for index in set(
            itertools.permutations([0] * counts[0] + [1] * counts[1] + [2] * counts[2])
        ):
            e[index] = 1.0
        columns.append(proj @ e.reshape(-1))
    q, r = torch.linalg.qr(torch.stack(columns, dim=1))
    return q * torch.sign(torch.diagonal(r))


def to_compressed(t: Tensor, rank: int) -> Tensor:
    """Full ``[..., 3^l as l axes]`` STF tensor -> ``[..., 2l+1]`` coordinates."""
    u = stf_basis(rank).to(dtype=t.dtype, device=t.device)
    return t.reshape(t.shape[: t.dim() - rank] + (3**rank,)) @ u


def from_compressed(c: Tensor, rank: int) -> Tensor:
    """``[..., 2l+1]`` coordinates -> full ``[..., 3, ..., 3]`` STF tensor."""
    u = stf_basis(rank).to(dtype=c.dtype, device=c.device)
    return (c @ u.T).reshape(c.shape[:-1] + (3,) * rank)


def _monomials(rank: int) -> list[tuple[int, int, int]]:
    return [(rank - b - c, b, c) for b in range(rank + 1) for c in range(rank - b + 1)]


@cache
def _monomial_matrix(rank: int) -> Tensor:
    """``M[k, m]``: coefficient of monomial ``k`` in :math:`U^T \\mathrm{vec}(n^{\\otimes l})`."""
    u = stf_basis(rank).reshape((3,) * rank + (2 * rank + 1,))
    rows = []
    for a, b, c in _monomials(rank):
        indices = set(itertools.permutations([0] * a + [1] * b + [2] * c))
        rows.append(sum(u[index] for index in indices))
    return harmonic_norm(rank) * torch.stack(rows)


def compressed_harmonics(vectors: Tensor, max_rank: int) -> list[Tensor]:
    """Compressed :math:`T^{(l)}(\\hat r)` for ``l = 0..max_rank``: a list of ``[..., 2l+1]``.

    Evaluated as a polynomial in the components of :math:`\\hat r` (one small matrix product per
    rank), equal to :func:`to_compressed` of :func:`cartesian_harmonic`.
    """
    n = vectors / torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    powers = [[torch.ones_like(x)], [torch.ones_like(y)], [torch.ones_like(z)]]
    for p, comp in zip(powers, (x, y, z)):
        for _ in range(max_rank):
            p.append(p[-1] * comp)
    out = []
    for rank in range(max_rank + 1):
        mono = torch.stack(
            [powers[0][a] * powers[1][b] * powers[2][c] for a, b, c in _monomials(rank)], dim=-1
        )
        out.append(mono @ _monomial_matrix(rank).to(dtype=n.dtype, device=n.device))
    return out
