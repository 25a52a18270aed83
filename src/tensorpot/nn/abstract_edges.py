r"""FreeCG's coupling of abstract edges, written on irreducible Cartesian tensor products.

FreeCG (Shao et al., ICLR 2025; FreeCG spec 3.2-3.4) pools an atom's edge messages into
channels ("abstract edges"), cuts the ``C = G E`` channels into ``G`` groups of ``E`` and, inside
each group, couples every abstract edge ``u`` with every own feature ``v`` of the atom, with a
weight per group, path and triple ``(u, v, w)``. Since the abstract edges are sums over the
neighbours, any function of them (this one treats edge ``u`` unlike edge ``u'``) stays
independent of the neighbours' order. The official code couples degrees 1 and 2 by CG
coefficients (:class:`tensorpot.nn.visnet.GroupCG`); here every path ``(l1, l2) -> l3`` of any
ranks is an irreducible Cartesian product (ICTP Eqs. (2), (3)) in compressed storage:

.. math::

    T^{g}_{w}{}^{(l_3)} = \frac{1}{\sqrt{P_{l_3} E^2}}
        \sum_{p = (l_1, l_2 \to l_3)} \sum_{u, v = 1}^{E} W^{g}_{p,u,v,w}\,
        \hat K_p\big(a^{g,u\,(l_1)},\, b^{g,v\,(l_2)}\big),
    \qquad \mathrm{out}_c = T_{(c + s) \bmod C},

with :math:`\hat K_p` the path's coupling normalised to :math:`\|\hat K_p\|_F^2 = 2l_3+1`
(:func:`tensorpot.tensors.unit_coupling`), :math:`P_{l_3}` the number of paths into rank
:math:`l_3` and ``s`` the shuffle, a cyclic shift of whole groups (FreeCG spec 3.4). With
unit-variance inputs and ``W ~ N(0, 1)`` every output coordinate has unit variance. At
ranks {1, 2} with even paths this is the spherical ``GroupCG``: the paths are the same four
and each differs from its spherical twin by the orthogonal change of basis
:func:`tensorpot.tensors.spherical.spherical_from_compressed` and a sign.

Even paths keep the parity of the inputs; odd paths (Eq. (3)) give pseudotensors from true
tensors. :class:`AbstractEdgeCoupling` (ICTP's ``freecg: true``) carries that parity through:
its pseudotensors are coupled once more by odd paths, back to true tensors, before they join
the features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tensorpot.nn.linear import RankLinear
from tensorpot.tensors import coupling_paths, unit_coupling


def group_layout(channels: int, groups: int | None, edges: int | None) -> tuple[int, int]:
    """``(G, E)`` for ``channels`` given either, both or none: by default ``E = 8`` (at most
    ``channels``) and ``G = channels / E``. The caller checks ``G E = channels``."""
    if edges is None:
        edges = channels // groups if groups is not None else min(8, channels)
    return (groups if groups is not None else channels // edges), edges


def default_shift(groups: int, edges: int) -> int:
    """FreeCG's shuffle ``G + G/2`` channels, rounded down to whole groups (at least one when
    there are several groups, none with one group)."""
    if groups == 1:
        return 0
    shift = groups + groups // 2
    return max(shift - shift % edges, edges) % (groups * edges)


class CartesianGroupCoupling(nn.Module):
    """The group coupling of the module docstring, for given ranks and one path parity.

    Features are rank-indexed lists ``x[l] [N, C, 2l+1]`` (compressed STF coordinates), channel
    ``c = g E + u``. Only the listed ranks of each input are read; ranks of the output that no
    path reaches are zero.

    Args:
        num_groups: ``G``.
        edges_per_group: ``E`` (``C = G E``).
        ranks_a: ranks of the abstract edges ``a`` that are coupled.
        ranks_b: ranks of the atom's own features ``b`` that are coupled.
        ranks_out: ranks of the output (the output list runs over ``0..max(ranks_out)``).
        parity: ``"even"`` paths (output parity = product of the inputs') or ``"odd"`` ones
            (pseudotensor paths: the output parity flipped).
        shift: the shuffle ``s``, in channels (0: none).
    """

    def __init__(
        self,
        num_groups: int,
        edges_per_group: int,
        ranks_a: Sequence[int],
        ranks_b: Sequence[int],
        ranks_out: Sequence[int],
        parity: str = "even",
        shift: int = 0,
    ):
        super().__init__()
        self.groups, self.edges, self.shift = num_groups, edges_per_group, shift
        self.paths = coupling_paths(ranks_a, ranks_b, ranks_out, parity)
        if not self.paths:
            raise ValueError(f"no {parity} path from ranks {ranks_a} x {ranks_b} to {ranks_out}")
        self.max_out = max(ranks_out)
        self.reached = sorted({p.l3 for p in self.paths})
        counts = {l3: sum(p.l3 == l3 for p in self.paths) for l3 in self.reached}
        self.scales = [(counts[p.l3] * edges_per_group**2) ** -0.5 for p in self.paths]
        e = edges_per_group
        self.weight = nn.Parameter(torch.randn(num_groups, len(self.paths), e, e, e))
        for k, p in enumerate(self.paths):
            self.register_buffer(f"coupling_{k}", unit_coupling(*p).clone(), persistent=False)

    def forward(self, a: list[Tensor], b: list[Tensor]) -> list[Tensor]:
        """``a[l1] [N, C, 2l1+1]``, ``b[l2] [N, C, 2l2+1]`` -> ``[N, C, 2l3+1]`` for
        ``l3 = 0..max(ranks_out)``."""
        n, g, e = a[self.paths[0].l1].shape[0], self.groups, self.edges
        out: list[Tensor | None] = [None] * (self.max_out + 1)
        for k, (p, scale) in enumerate(zip(self.paths, self.scales)):
            term = scale * self._path(k, a[p.l1], b[p.l2], 2 * p.l1 + 1, 2 * p.l2 + 1)
            out[p.l3] = term if out[p.l3] is None else out[p.l3] + term
        ref = a[self.paths[0].l1]
        result = [
            t if t is not None else ref.new_zeros(n, g * e, 2 * rank + 1)
            for rank, t in enumerate(out)
        ]
        if self.shift:
            result = [torch.roll(t, -self.shift, dims=1) for t in result]
        return result

    def _path(self, k: int, a: Tensor, b: Tensor, d1: int, d2: int) -> Tensor:
        """Path ``k`` unscaled, ``[N, C, d1]`` x ``[N, C, d2]`` -> ``[N, C, d3]``: the
        coupling with ``a``, then ``b``, then the weights, as matrix products of contiguous
        operands (an einsum's internal views, traced for one number of atoms, may not fit
        another in an exported program)."""
        n, g, e = a.shape[0], self.groups, self.edges
        coupling = getattr(self, f"coupling_{k}")  # [d1, d2, d3]
        d3 = coupling.shape[2]
        x = a.contiguous().view(n * g * e, d1) @ coupling.view(d1, d2 * d3)  # [N G u, d2 d3]
        x = x.view(n * g, e, d2, d3).transpose(1, 2).contiguous().view(n * g, d2, e * d3)
        y = b.contiguous().view(n * g, e, d2)
        pairs = torch.bmm(y, x).view(n, g, e, e, d3)  # [N, G, v, u, d3]
        pairs = pairs.permute(1, 0, 4, 3, 2).contiguous().view(g, n * d3, e * e)  # (u, v)
        w = self.weight[:, k].contiguous().view(g, e * e, e)  # [G, (u, v), w]
        out = torch.bmm(pairs, w).view(g, n, d3, e)
        return out.permute(1, 0, 3, 2).contiguous().view(n, g * e, d3)


class AbstractEdgeCoupling(nn.Module):
    r"""ICTP's ``freecg: true`` layer: the aggregated features ``A`` as abstract edges, coupled
    with the atom's own features and added back, between the interaction and the product basis.

    .. math::

        A' = A + \mathrm{Shift}\big(T_{\mathrm{even}}(A, \tilde h)
            + T_{\mathrm{odd}}'(T_{\mathrm{odd}}(A, \tilde h), \tilde h')\big),

    :math:`\tilde h, \tilde h'` per-rank linear maps of the layer's input ``h`` to the ``C``
    channels of ``A`` (FreeCG couples with the atom's own gated features likewise). Ranks of
    ``A`` up to ``max_rank`` are coupled and updated; higher ranks pass unchanged. The odd
    terms (``odd=True``) make pseudotensors :math:`T_{\mathrm{odd}}` (ranks >= 1), and a
    second odd product turns them into true tensors, so that the features, and the energy
    read from them, keep their parity: under a reflection the pseudotensors change sign
    relative to true tensors and the energy is unchanged.

    Args:
        num_channels: ``C`` of ``h``.
        num_groups: ``G``.
        edges_per_group: ``E``; ``G E`` is the channel count of ``A``.
        max_rank: the largest rank of ``A`` coupled (``l_max`` of the abstract edges).
        node_max_rank: the largest rank of ``h``.
        odd: add the pseudotensor paths (they need ``h`` of rank >= 1: none in a first
            layer, whose ``h`` is scalar).
        shift: the shuffle, in channels.
    """

    def __init__(
        self,
        num_channels: int,
        num_groups: int,
        edges_per_group: int,
        max_rank: int,
        node_max_rank: int,
        odd: bool = False,
        shift: int = 0,
    ):
        super().__init__()
        own_rank = min(node_max_rank, max_rank)
        ranks, own = range(max_rank + 1), range(own_rank + 1)
        self.max_rank, self.shift = max_rank, shift
        c = num_groups * edges_per_group
        self.own = RankLinear(num_channels, c, own_rank)
        self.even = CartesianGroupCoupling(num_groups, edges_per_group, ranks, own, ranks)
        self.odd = self.odd_back = self.own_back = None
        if odd and own_rank > 0 and max_rank > 0:
            self.odd = CartesianGroupCoupling(
                num_groups, edges_per_group, ranks, own, ranks, parity="odd"
            )
            self.own_back = RankLinear(num_channels, c, own_rank)
            self.odd_back = CartesianGroupCoupling(
                num_groups, edges_per_group, self.odd.reached, own, ranks, parity="odd"
            )

    def forward(self, a: list[Tensor], h: list[Tensor]) -> list[Tensor]:
        """``A[l] [N, C, 2l+1]`` (``l <= L``), ``h[l] [N, C_h, 2l+1]`` -> ``A'`` like ``A``."""
        own = self.own(h[: len(self.own.weights)])
        t = self.even(a, own)
        if self.odd is not None:
            pseudo = self.odd(a, own)
            back = self.odd_back(pseudo, self.own_back(h[: len(self.own_back.weights)]))
            t = [x + y for x, y in zip(t, back)]
        if self.shift:
            t = [torch.roll(x, -self.shift, dims=1) for x in t]
        return [x + y for x, y in zip(a[: self.max_rank + 1], t)] + a[self.max_rank + 1 :]
