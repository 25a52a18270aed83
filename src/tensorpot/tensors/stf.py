r"""Symmetric trace-free (STF) projection of Cartesian tensors of any rank (ICTP spec 2.1).

A rank-:math:`l` tensor is stored with its :math:`l` Cartesian indices as the last :math:`l`
axes, each of size 3. For a symmetric tensor :math:`S`,

.. math::

    \mathrm{STF}(S) = \sum_{m=0}^{\lfloor l/2 \rfloor} (-1)^m
        \frac{(2l-2m-1)!!}{(2l-1)!!} \sum_{\text{placements}} \delta^{\otimes m} \otimes S^{[m]}

where :math:`S^{[m]}` is :math:`S` traced :math:`m` times and the inner sum runs over the
:math:`l!/(2^m m! (l-2m)!)` distinct ways of placing the free indices. A non-symmetric input is
symmetrised first. STF is the orthogonal projector onto a :math:`2l+1`-dimensional subspace.
"""

from __future__ import annotations

import math
from functools import cache

import torch
from torch import Tensor


def double_factorial(n: int) -> int:
    """:math:`n!!` with the convention :math:`(-1)!! = 0!! = 1`."""
    return math.prod(range(n, 0, -2)) if n > 0 else 1


def symmetrize(t: Tensor, rank: int) -> Tensor:
    """Average of ``t`` over all permutations of its last ``rank`` axes.

    Uses the coset recursion :math:`\\mathcal{S}_l = \\frac{1}{l}\\sum_{k} \\tau_{k,l}
    (\\mathcal{S}_{l-1} \\otimes 1)` (transpositions of axis ``k`` with the last axis), so the
    cost grows as :math:`l^2` permutations instead of :math:`l!`.

    Args:
        t: tensor of shape ``[..., 3, ..., 3]`` with ``rank`` trailing Cartesian axes.
        rank: number of trailing Cartesian axes.
    """
    if rank <= 1:
        return t
    lead = t.dim() - rank
    inner = symmetrize(t.movedim(-1, 0), rank - 1).movedim(0, -1)  # symmetric in axes 0..l-2
    total = inner.clone()
    for k in range(rank - 1):
        total = total + inner.transpose(lead + k, lead + rank - 1)
    return total / rank


def _trace_pairs(t: Tensor, rank: int, m: int) -> Tensor:
    """Contract the first ``2m`` of the trailing ``rank`` axes in pairs (``m`` traces)."""
    for _ in range(m):
        lead = t.dim() - rank
        t = torch.diagonal(t, dim1=lead, dim2=lead + 1).sum(-1)
        rank -= 2
    return t


def _delta_power(m: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    out = torch.ones((), dtype=dtype, device=device)
    eye = torch.eye(3, dtype=dtype, device=device)
    for _ in range(m):
        out = torch.tensordot(out, eye, dims=0)
    return out


def stf_project(t: Tensor, rank: int) -> Tensor:
    """Symmetric trace-free part of ``t`` (spec 2.1), for any rank.

    Args:
        t: ``[..., 3, ..., 3]`` with ``rank`` trailing Cartesian axes.
        rank: the tensor rank ``l``.

    Returns:
        A tensor of the same shape, symmetric and traceless in its last ``rank`` axes.

    Example:
        >>> a = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 5.0]])
        >>> float(stf_project(a, 2).diagonal().sum())
        0.0
    """
    s = symmetrize(t, rank)
    out = torch.zeros_like(s)
    for m in range(rank // 2 + 1):
        placements = math.factorial(rank) // (
            2**m * math.factorial(m) * math.factorial(rank - 2 * m)
        )
        coeff = (-1) ** m * double_factorial(2 * rank - 2 * m - 1) / double_factorial(2 * rank - 1)
        traced = _trace_pairs(s, rank, m)  # [..., 3^(l-2m)]
        # delta axes go last; the symmetrisation then spreads them over all placements
        term = torch.tensordot(traced, _delta_power(m, s.dtype, s.device), dims=0) if m else traced
        out = out + coeff * placements * symmetrize(term, rank)
    return out


@cache
def stf_matrix(rank: int) -> Tensor:
    """The STF projector as a ``[3^l, 3^l]`` float64 matrix (cached; do not modify)."""
    eye = torch.eye(3**rank, dtype=torch.float64).reshape((3**rank,) + (3,) * rank)
    return stf_project(eye, rank).reshape(3**rank, 3**rank)
