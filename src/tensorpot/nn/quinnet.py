r"""The blocks QuinNet (Wang et al., NeurIPS 2023) adds to the ViSNet layer.

QuinNet spec section 3. QuinNet's layer is ViSNet's (:class:`~tensorpot.nn.visnet.ViSMP`: the
same attention, messages ``M_i``, vector messages ``V_i`` and ``dv = C o1 + V``) with richer
geometric scalars: ``dx_i = (sum_k r_k T_k,i) o2_i + o3_i`` with six scalars ``T_1..T_6`` in place
of ViSNet's one, and ``df_ij = e3 + e4 + e5`` with two edge terms beside ViSNet's. Notation as
in :mod:`tensorpot.nn.visnet`: ``v [N, 8, F]``, ``<a, b> = sum_m a_m b_m`` per channel (over the
8 components), edge ``e`` from its ``centre`` (receives the messages) to its ``neighbour``.

- :func:`rejection`: ``Rej(a, b) = a - b <a, b>``, with ``b`` not normalised;
- :class:`NodeGeometry`: the scalars of one atom's own ``v`` (``T_2``, ``T_6``) and its
  normal vectors ``n`` (spec 3.2);
- :class:`ManyBodyEdgeTerms`: the edge terms ``e3``, ``e4`` that couple the normal vectors of
  two bonded atoms (spec 3.3);
- :class:`QuinMP`: the layer (spec 3.4).

Initialisation as in the official code: the new maps ``P`` on vectors keep PyTorch's default
``nn.Linear`` init (uniform in ``+-1/sqrt(F)``), the new edge gates are Xavier-uniform with zero
biases, and the term weights ``r`` start at ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from tensorpot.nn.visnet import ViSMP, _EdgeDot, linear


def rejection(a: Tensor, b: Tensor) -> Tensor:
    """``Rej(a, b) = a - b <a, b>`` per channel: ``a, b [..., 8, F]`` (the component axis second
    to last). ``b`` is not normalised, so this is a projection only where ``|b| = 1``."""
    return a - b * (a * b).sum(dim=-2, keepdim=True)


class NodeGeometry(nn.Module):
    r"""The geometric scalars of one atom's equivariant features (spec 3.2).

    With five channel maps ``[a_1, ..., a_5] = v [P_1, ..., P_5]`` (``F x F`` each, no bias):

    .. math::

        n_i = \mathrm{Rej}(a_{1,i}, a_{2,i}), \quad T_{2,i} = \langle n_i, n_i \rangle, \quad
        T_{6,i} = \langle \mathrm{Rej}(a_{3,i}, a_{4,i}), a_{5,i} \rangle.

    For unit vectors, ``<Rej(a, b), Rej(a, b)>`` is ``sin^2`` of their angle and
    ``<Rej(a, b), c>`` a dihedral about ``b``: with ``v_i`` a sum over neighbours, ``T_2`` and
    ``T_6`` see angles and improper torsions of up to four atoms. ``forward(v [N, 8, F])`` returns
    ``(n [N, 8, F], T_2 [N, F], T_6 [N, F])``; ``n`` feeds :class:`ManyBodyEdgeTerms`.
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.channels = num_channels
        # one [5F, F] map: P_1..P_5 stacked, each with nn.Linear's default init for fan-in F
        self.proj = nn.Linear(num_channels, 5 * num_channels, bias=False)

    def forward(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a1, a2, a3, a4, a5 = torch.split(self.proj(v), self.channels, dim=-1)
        normal = rejection(a1, a2)
        return normal, (normal * normal).sum(dim=1), (rejection(a3, a4) * a5).sum(dim=1)


class ManyBodyEdgeTerms(nn.Module):
    r"""The edge terms of the normal vectors ``n`` of two bonded atoms (spec 3.3).

    On the edge ``e`` from centre ``c`` to neighbour ``b``, with its feature ``f_e [F]``:

    .. math::

        e_{3,e} = \sigma(W_3 f_e + b_3) \odot \langle n_c P_{s1}, n_b P_d \rangle, \qquad
        e_{4,e} = \sigma(W_4 f_e + b_4) \odot \langle n_c P_{s2}, n_c P_{s2} \rangle,

    ``sigma`` = SiLU. Summed over a neighbour's edges, ``e_3`` couples two atoms' normal vectors
    (five atoms or more) and ``e_4`` brings a neighbour's ``sin^2``-type scalar to the atom.
    ``forward(n [N, 8, F], f [E, F], centre, neighbour [E])`` returns ``(e_3, e_4)``, each
    ``[E, F]``; the maps ``P`` act on nodes, then the products are gathered per edge.
    """

    def __init__(self, num_channels: int):
        super().__init__()
        self.channels = num_channels
        # [P_s1, P_d, P_s2]: three F x F maps on n, nn.Linear's default init for fan-in F
        self.normal_proj = nn.Linear(num_channels, 3 * num_channels, bias=False)
        self.gate3, self.gate4 = (
            linear(num_channels, num_channels),
            linear(num_channels, num_channels),
        )

    def forward(
        self, normal: Tensor, f: Tensor, centre: Tensor, neighbour: Tensor
    ) -> tuple[Tensor, Tensor]:
        own, other, square = torch.split(self.normal_proj(normal), self.channels, dim=-1)
        e3 = F.silu(self.gate3(f)) * _EdgeDot.apply(own, other, centre, neighbour)
        norm = (square * square).sum(dim=1)  # [N, F]
        e4 = F.silu(self.gate4(f)) * norm.index_select(0, centre)
        return e3, e4


class QuinMP(ViSMP):
    r"""One QuinNet layer (spec 3): a :class:`~tensorpot.nn.visnet.ViSMP` (its attention,
    messages, vector messages, enhancer and group CG, its weights) whose runtime geometry
    (:meth:`geometry`) has QuinNet's scalars and edge terms.

    .. math::

        \Delta x_i = \Big(\sum_{k=1}^{6} r_k T_{k,i}\Big) \odot o_{2,i} + o_{3,i}, \qquad
        \Delta v_i = C_i \odot o_{1,i} + V_i, \qquad
        \Delta f_e = e_{3,e} + e_{4,e} + e_{5,e},

    ``T_1 = <A, B>`` (ViSNet's), ``T_2``, ``T_6`` of :class:`NodeGeometry`, and ``T_3``, ``T_4``,
    ``T_5`` the sums of the edge terms over the edges whose **neighbour** is the atom (the
    official code's choice: the messages are summed at the centre, these at the other end),
    ``e_3``, ``e_4`` of :class:`ManyBodyEdgeTerms` and ViSNet's dihedral term
    ``e_5 = sigma(W_f f + b) <A' v_c, B' v_b>``. ``r`` (six weights) starts at ones. The last
    layer still computes the edge terms (they enter ``dx``) and returns no ``df``.

    ``smooth`` multiplies the vector messages (as in ViSMP) and the edge terms' sums by
    ``f_c(d)``, so that energy and forces stay continuous when a neighbour crosses ``r_max``; the
    edge terms ``df`` themselves are not cut (an edge's feature only acts on that edge, whose
    messages are cut). Arguments as :class:`~tensorpot.nn.visnet.ViSMP`'s (``options``: its
    ``vecnorm``, ``enhancer``, ``group_cg`` and ``smooth``).
    """

    def __init__(
        self, num_channels: int, num_heads: int, r_max: float, last: bool = False, **options
    ):
        # ViSMP's edge-update weights are e_5's, which every QuinNet layer uses
        super().__init__(num_channels, num_heads, r_max, last=False, **options)
        self.last = last
        self.node_geometry = NodeGeometry(num_channels)
        self.edge_terms = ManyBodyEdgeTerms(num_channels)
        self.term_weights = nn.Parameter(torch.ones(6))

    def geometry(
        self, v: Tensor, v1: Tensor, v2: Tensor, f: Tensor, centre: Tensor, neighbour: Tensor,
        cutoff: Tensor,
    ) -> tuple[Tensor, Tensor | None]:  # fmt: skip
        """QuinNet's runtime geometry: ``sum_k r_k T_k [N, F]`` (which multiplies ``o2``) and
        ``df = e3 + e4 + e5 [E, F]`` (None in the last layer), from the normed ``v [N, 8, F]``,
        ``A = v1``, ``B = v2`` and the cutoff ``f_c(d) [E, 1]``."""
        r = self.term_weights
        normal, t2, t6 = self.node_geometry(v)
        e3, e4 = self.edge_terms(normal, f, centre, neighbour)
        e5 = self.dihedral(v, f, centre, neighbour)
        summed = r[2] * e3 + r[3] * e4 + r[4] * e5
        if self.smooth:
            summed = summed * cutoff
        scalars = r[0] * (v1 * v2).sum(dim=1) + r[1] * t2 + r[5] * t6
        scalars = scalars.index_add(0, neighbour, summed)  # T_3..T_5 at the neighbour
        return scalars, (None if self.last else e3 + e4 + e5)
