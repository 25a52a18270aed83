r"""Irreducible Cartesian tensor products (ICTP Eqs. (2) and (3)) and their path bookkeeping.

Even product (:math:`l_1+l_2+l_3` even), with :math:`k = (l_1+l_2-l_3)/2` contracted pairs:

.. math::

    (a \otimes b)^{(l_3)} = C(l_1,l_2,l_3)\, \mathrm{STF}(a \cdot_k b), \qquad
    C = N \frac{l_3!}{(l_1-k)!\,(l_2-k)!},

    N = \frac{l_1!\, l_2!\, (2l_3-1)!!\, ((J_1+1)/2)!\, ((J_2+1)/2)!}
             {l_3!\, J_1!!\, J_2!!\, J_3!!\, (J/2)!},

with :math:`J = l_1+l_2+l_3` and :math:`J_i = J - 2l_i - 1`. The constant makes harmonics of one
unit vector couple to the harmonic of the target rank,
:math:`(T^{(l_1)}(n)\otimes T^{(l_2)}(n))^{(l_3)} = T^{(l_3)}(n)`.

Odd product (:math:`l_1+l_2+l_3` odd, a pseudotensor), with :math:`k' = (l_1+l_2-l_3-1)/2`
contracted pairs and one more index of each factor contracted with the Levi-Civita symbol:

.. math::

    (a \otimes b)^{(l_3)} = C_{\mathrm{odd}}\, \mathrm{STF}(\epsilon : (a \cdot_{k'} b)).

The ICTP paper's constant for Eq. (3) is not used here.
**Our normalisation:** :math:`C_{\mathrm{odd}}`
makes the compressed coupling tensor (:func:`coupling_tensor`) have squared Frobenius norm
:math:`2l_3+1`, i.e. unit-variance outputs for independent unit-variance compressed inputs.
Odd paths are off by default everywhere (the models are O(3)-equivariant with even paths only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import NamedTuple

import torch
from torch import Tensor

from tensorpot.tensors.harmonics import stf_basis
from tensorpot.tensors.stf import double_factorial, stf_matrix


class Path(NamedTuple):
    """One coupling ``(l1, l2) -> l3`` of a rank-``l1`` and a rank-``l2`` tensor."""

    l1: int
    l2: int
    l3: int

    @property
    def is_even(self) -> bool:
        return (self.l1 + self.l2 + self.l3) % 2 == 0


def is_admissible(l1: int, l2: int, l3: int, odd: bool = False) -> bool:
    """Triangle rule, and parity: even paths always, odd ones only when ``odd``."""
    if not abs(l1 - l2) <= l3 <= l1 + l2:
        return False
    even = (l1 + l2 + l3) % 2 == 0
    return even or (odd and l3 < l1 + l2)


def even_constant(l1: int, l2: int, l3: int) -> float:
    """:math:`C(l_1, l_2, l_3)` of Eq. (2) (see the module docstring)."""
    j = l1 + l2 + l3
    j1, j2, j3 = j - 2 * l1 - 1, j - 2 * l2 - 1, j - 2 * l3 - 1
    k = (l1 + l2 - l3) // 2
    f, df = math.factorial, double_factorial
    n = (f(l1) * f(l2) * df(2 * l3 - 1) * f((j1 + 1) // 2) * f((j2 + 1) // 2)) / (
        f(l3) * df(j1) * df(j2) * df(j3) * f(j // 2)
    )
    return n * f(l3) / (f(l1 - k) * f(l2 - k))


def _levi_civita(dtype: torch.dtype, device: torch.device) -> Tensor:
    eps = torch.zeros(3, 3, 3, dtype=dtype, device=device)
    for (i, j, k), s in {(0, 1, 2): 1, (1, 2, 0): 1, (2, 0, 1): 1}.items():
        eps[i, j, k], eps[j, i, k] = s, -s
    return eps


def _contract(a: Tensor, b: Tensor, l1: int, l2: int, k: int) -> Tensor:
    """``a ._k b``: the last ``k`` axes of ``a`` with the first ``k`` Cartesian axes of ``b``."""
    batch = torch.broadcast_shapes(a.shape[: a.dim() - l1], b.shape[: b.dim() - l2])
    a = a.expand(batch + a.shape[a.dim() - l1 :]).reshape(batch + (3 ** (l1 - k), 3**k))
    b = b.expand(batch + b.shape[b.dim() - l2 :]).reshape(batch + (3**k, 3 ** (l2 - k)))
    out = torch.matmul(a, b)
    return out.reshape(batch + (3,) * (l1 + l2 - 2 * k))


def _unscaled_product(a: Tensor, b: Tensor, l1: int, l2: int, l3: int) -> Tensor:
    if (l1 + l2 + l3) % 2 == 0:
        k = (l1 + l2 - l3) // 2
        out = _contract(a, b, l1, l2, k)
    else:
        k = (l1 + l2 - l3 - 1) // 2
        c = _contract(a, b, l1, l2, k)  # [..., (l1-k) axes of a, (l2-k) axes of b]
        lead = c.dim() - (l1 + l2 - 2 * k)
        p = lead + l1 - k - 1  # last free axis of a, followed by the first free axis of b
        c = c.movedim((p, p + 1), (-2, -1))
        out = torch.tensordot(c, _levi_civita(c.dtype, c.device), dims=([-2, -1], [0, 1]))
    flat = out.reshape(out.shape[: out.dim() - l3] + (3**l3,))
    flat = flat @ stf_matrix(l3).to(dtype=flat.dtype, device=flat.device)
    return flat.reshape(out.shape)


def ict_product(a: Tensor, b: Tensor, l1: int, l2: int, l3: int) -> Tensor:
    """The irreducible Cartesian product of full-storage tensors (Eq. (2) or (3)).

    Args:
        a: ``[..., 3^l1 as l1 axes]`` symmetric traceless tensor.
        b: ``[..., 3^l2 as l2 axes]``; leading axes broadcast against ``a``'s.
        l1, l2, l3: the ranks; even or odd product by the parity of ``l1 + l2 + l3``.

    Returns:
        ``[..., 3, ..., 3]`` with ``l3`` trailing axes, symmetric and traceless.
    """
    if not is_admissible(l1, l2, l3, odd=True):
        raise ValueError(f"({l1}, {l2}) -> {l3} is not an admissible path")
    scale = even_constant(l1, l2, l3) if (l1 + l2 + l3) % 2 == 0 else _odd_constant(l1, l2, l3)
    return scale * _unscaled_product(a, b, l1, l2, l3)


def _compressed_coupling(l1: int, l2: int, l3: int) -> Tensor:
    u1, u2, u3 = stf_basis(l1), stf_basis(l2), stf_basis(l3)
    a = u1.T.reshape((2 * l1 + 1, 1) + (3,) * l1)
    b = u2.T.reshape((1, 2 * l2 + 1) + (3,) * l2)
    out = _unscaled_product(a, b, l1, l2, l3)
    return out.reshape(2 * l1 + 1, 2 * l2 + 1, 3**l3) @ u3


@cache
def _odd_constant(l1: int, l2: int, l3: int) -> float:
    norm2 = float(_compressed_coupling(l1, l2, l3).pow(2).sum())
    return math.sqrt((2 * l3 + 1) / norm2)


@cache
def coupling_tensor(l1: int, l2: int, l3: int) -> Tensor:
    """The product in compressed storage: ``K [2l1+1, 2l2+1, 2l3+1]`` float64 (cached).

    For compressed ``x`` and ``y``,
    ``to_compressed(ict_product(from_compressed(x), from_compressed(y)))
    = einsum("i,j,ijk->k", x, y, K)``. This is the contraction plan of the path, built once.
    """
    if not is_admissible(l1, l2, l3, odd=True):
        raise ValueError(f"({l1}, {l2}) -> {l3} is not an admissible path")
    scale = even_constant(l1, l2, l3) if (l1 + l2 + l3) % 2 == 0 else _odd_constant(l1, l2, l3)
    return scale * _compressed_coupling(l1, l2, l3)


def product_paths(
    max_l1: int, max_l2: int, max_l3: int, symmetric: bool = False, odd: bool = False
) -> list[Path]:
    """All admissible paths, ordered by ``l3``, then ``l1``, then ``l2``.

    Args:
        max_l1, max_l2, max_l3: the largest ranks of the two inputs and of the output.
        symmetric: the inputs are the same tensor: keep ``l1 >= l2`` for even paths and
            ``l1 > l2`` for odd ones (the others repeat or vanish, spec 2.6/2.7).
        odd: include the odd (pseudotensor) paths.
    """
    paths = []
    for l3 in range(max_l3 + 1):
        for l1 in range(max_l1 + 1):
            for l2 in range(max_l2 + 1):
                if not is_admissible(l1, l2, l3, odd):
                    continue
                even = (l1 + l2 + l3) % 2 == 0
                if symmetric and (l1 < l2 or (not even and l1 == l2)):
                    continue
                paths.append(Path(l1, l2, l3))
    return paths


def coupling_paths(
    ranks_a: Sequence[int], ranks_b: Sequence[int], ranks_out: Sequence[int], parity: str = "even"
) -> list[Path]:
    """The admissible paths between given ranks of two inputs and an output, of one parity.

    Ordered by ``l3``, then ``l1``, then ``l2``. ``parity="even"``: the products of Eq. (2),
    which keep the inputs' parity; ``"odd"``: those of Eq. (3), which flip it (a product of two
    true tensors is a pseudotensor, of a pseudotensor and a true tensor a true tensor).
    """
    if parity not in ("even", "odd"):
        raise ValueError(f"parity must be 'even' or 'odd', got {parity!r}")
    odd = parity == "odd"
    return [
        Path(l1, l2, l3)
        for l3 in sorted(set(ranks_out))
        for l1 in sorted(set(ranks_a))
        for l2 in sorted(set(ranks_b))
        if is_admissible(l1, l2, l3, odd) and ((l1 + l2 + l3) % 2 == 1) == odd
    ]


@cache
def unit_coupling(l1: int, l2: int, l3: int) -> Tensor:
    r"""The path's compressed coupling tensor rescaled to squared Frobenius norm :math:`2l_3+1`.

    .. math::  \hat K = \sqrt{2l_3+1}\, K / \|K\|_F

    With independent unit-variance compressed inputs every output coordinate then has unit
    variance, :math:`\sum_{ij} \hat K_{ijk}^2 = 1` on average over ``k`` (every ``k`` alike,
    by equivariance), the "component" normalisation of e3nn's Wigner 3j products. Odd paths
    already have it (:func:`coupling_tensor`). Float64, cached; do not modify.
    """
    k = coupling_tensor(l1, l2, l3)
    return k * math.sqrt((2 * l3 + 1) / float(k.pow(2).sum()))


def path_multiplicities(
    paths: Sequence[Path], in_multiplicities: Sequence[int], max_l3: int
) -> list[int]:
    """Path slots per output rank when input rank ``l1`` already carries ``P_l1`` slots.

    ``P_out[l3] = sum over paths (l1, l2) -> l3 of P_in[l1]`` (spec 3.5).
    """
    out = [0] * (max_l3 + 1)
    for p in paths:
        if p.l1 < len(in_multiplicities):
            out[p.l3] += in_multiplicities[p.l1]
    return out
