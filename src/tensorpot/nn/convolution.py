r"""The convolution of the interaction as one autograd node, evaluated once per edge pair.

For every block ``(l1, l3)`` of :class:`tensorpot.nn.tensor_product.EdgeTensorProduct`,

.. math::

    A_b[u, c, k, p] = \sum_{v \in \mathcal N(u)} R[g(uv), f_b + p, c]
        \sum_i YK_{l_1}(\hat r_{uv})[(k, p)_b, i]\, h_{l_1}[v, c, i]

with ``YK`` the channel-free contraction of the edge harmonics with the couplings, ``R`` the
radial weights of the pair ``g(uv)`` of the edge (:mod:`tensorpot.data.pairs`) and ``f_b`` the
first path of the block. The two edges of a pair share their length, so ``R``, and their
harmonics differ by the parity of ``l2`` (:math:`T^{(l_2)}(-\hat r) = (-1)^{l_2} T^{(l_2)}(\hat
r)`), so ``YK`` of the reverse edge is ``YK`` of the first one with the sign ``s`` of the path
on every column. The sum therefore runs over pairs: for the pair of ``u -> v`` (and ``v -> u``)

.. math::

    A[u] \mathrel{+}= R \odot (YK \cdot h_v), \qquad
    A[v] \mathrel{+}= \rho\, s \odot R \odot (YK \cdot h_u)

with ``rho = 1`` if the reverse edge is in the graph and 0 for a lone edge. The harmonics and
``YK`` are computed once per pair, the radial weights of a pair are read once, in pair order,
and multiply both of its messages.

Written with plain operations, autograd would keep every message (the largest tensors of the
model) for the backward pass. This node keeps only its inputs (node features, ``YK`` and the
radial weights per pair) and recomputes the gathers and messages chunk by chunk of pairs when
the gradient is taken, which bounds the extra memory of a large cell by one chunk's messages
(:data:`CHUNK_BYTES`); when the messages of all pairs are small (:data:`KEEP_BYTES`) and the
model is not training, they are kept instead of recomputed. The backward pass is written with
differentiable operations, so forces can themselves be differentiated (training on forces).

On the CPU the same sum and its derivatives run as the CPU kernel's operators
(:mod:`tensorpot.nn.cpu_kernel`, :mod:`tensorpot.nn.operators`), compiled loops over the
edges that never form the messages as tensors, their backward pass differentiable again; the
operations above remain for other devices and where the kernel is not chosen.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
from torch import Tensor

from tensorpot.nn import cpu_kernel

#: per l1 group: (l1, ((l3, number of paths, first path index), ...))
Groups = tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...]

#: pairs are processed in chunks whose messages ``[2 G_c, Q_l1, C]`` take at most this many
#: bytes: the transient memory of a large cell is bounded, and a chunk's gather, product and
#: sum run from cache (4 MiB against 256 MiB halved the time per atom of fcc cells of 2,048
#: atoms and more on a 2-core machine, benchmarks/workloads.py --workload fcc)
CHUNK_BYTES = 2**22

#: messages of all chunks together are kept for the backward pass (not recomputed) up to this
#: size: a small graph saves a batched product per group, a large one keeps its memory
KEEP_BYTES = 2**24


class PairGraph(NamedTuple):
    """The edges of a graph as pairs: the first edge ``u -> v`` of each pair and its reverse."""

    nodes: Tensor  # [2G] long: u_0, v_0, u_1, v_1, ... (centre and neighbour of the first edge)
    sources: Tensor  # [2G] long: v_0, u_0, v_1, u_1, ... (where each direction's message starts)
    reverse: Tensor  # [G] float: 1 if the pair also holds the edge v -> u, else 0

    @classmethod
    def from_edges(
        cls,
        edge_index: Tensor,
        pair_first: Tensor | None = None,
        edge_pair: Tensor | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> PairGraph:
        """Pairs from ``edge_index [2, E]`` and :func:`tensorpot.data.pairs.edge_pairs`
        (``pair_first [G]``, ``edge_pair [E]``, at most two edges a pair, which ``edge_pairs``
        checks); without them every edge is a pair of its own. No value is read back from the
        device.
        """
        if pair_first is None or edge_pair is None:
            pair_first = torch.arange(edge_index.shape[1], device=edge_index.device)
            counts = torch.ones_like(pair_first)
        else:
            counts = torch.zeros_like(pair_first).index_add_(
                0, edge_pair, torch.ones_like(edge_pair)
            )
        first = edge_index[:, pair_first]  # [2, G]
        return cls(first.t().flatten(), first.flip(0).t().flatten(), (counts == 2).to(dtype))


def _chunks(num_pairs: int, groups: Groups, channels: int, itemsize: int):
    """Slices of at most :data:`CHUNK_BYTES` of messages. A symbolic number of pairs (a graph
    traced for any size, :mod:`tensorpot.models.export`) is one chunk: the number of chunks
    would otherwise be fixed at the size the graph was traced with."""
    if isinstance(num_pairs, torch.SymInt):
        yield slice(0, num_pairs)
        return
    widest = max(sum(count * (2 * l3 + 1) for l3, count, _ in specs) for _, specs in groups)
    size = max(1, CHUNK_BYTES // (widest * 2 * channels * itemsize))
    for start in range(0, num_pairs, size):
        yield slice(start, min(start + size, num_pairs))


@functools.lru_cache(maxsize=256)
def _path_columns(specs: tuple[tuple[int, int, int], ...], device: torch.device) -> Tensor:
    """The path of every column ``(k, p)`` of a group's messages ``[., Q_l1, C]``."""
    cols = [
        first + p for l3, count, first in specs for _ in range(2 * l3 + 1) for p in range(count)
    ]
    return torch.tensor(cols, dtype=torch.long, device=device)


def _messages(yk: Tensor, x: Tensor) -> Tensor:
    """``[R, Q, i] x [R, C, i] -> [R, Q, C]``; for scalars (``i = 1``) an outer product, which
    runs several times faster than a batched product of 1-wide matrices."""
    return yk * x.transpose(1, 2) if yk.shape[-1] == 1 else torch.bmm(yk, x.transpose(1, 2))


def _both_directions(yk: Tensor, sign_reverse: Tensor) -> Tensor:
    """``YK [G_c, Q, i]`` of a chunk's first edges -> ``[2 G_c, Q, i]``: row ``2g`` the first
    edge's, row ``2g + 1`` the reverse edge's (``(-1)^l2`` per column, zero for a lone edge)."""
    return torch.stack([yk, yk * sign_reverse], dim=1).flatten(0, 1)


class _Convolution(torch.autograd.Function):
    """Rows ``2g + d`` are the two directions of pair ``g``; ``YK [G, Q, i]`` and the radial
    weights ``[G, P, C]`` are per pair, and the reverse direction is formed chunk by chunk."""

    @staticmethod
    def forward(ctx, nodes, sources, reverse, radial, num_nodes, groups, signs, may_keep, *tensors):
        hs, yks = tensors[: len(groups)], tensors[len(groups) :]
        ctx.groups, ctx.signs = groups, signs
        channels = hs[0].shape[1]
        aggs = [hs[0].new_zeros((num_nodes, yk.shape[1], channels)) for yk in yks]
        chunks = list(_chunks(radial.shape[0], groups, channels, hs[0].element_size()))
        columns = [_path_columns(specs, radial.device) for _, specs in groups]
        size = 2 * radial.shape[0] * channels * sum(yk.shape[1] for yk in yks)
        symbolic = isinstance(size, torch.SymInt)  # traced for any size: recomputed
        keep = may_keep and not symbolic and size * hs[0].element_size() <= KEEP_BYTES
        kept = []
        for c in chunks:
            rows = slice(2 * c.start, 2 * c.stop)
            for h, yk, agg, cols, sign in zip(hs, yks, aggs, columns, signs):
                x = h.index_select(0, sources[rows])  # [2G_c, C, i]
                yk2 = _both_directions(yk[c], reverse[c, None, None] * sign[:, None])
                m = _messages(yk2, x)  # [2G_c, Q_l1, C]
                w = radial[c].index_select(1, cols)  # [G_c, Q_l1, C], both directions
                weighted = m.view(-1, 2, *m.shape[1:]) * w[:, None]
                agg.index_add_(0, nodes[rows], weighted.view(m.shape))
                if keep:  # small enough to keep (chunk by chunk); otherwise recomputed
                    kept.append(m)
        ctx.save_for_backward(nodes, sources, reverse, radial, *tensors, *kept)
        return tuple(aggs)

    @staticmethod
    def backward(ctx, *grads):
        nodes, sources, reverse, radial, *tensors = ctx.saved_tensors
        groups, signs = ctx.groups, ctx.signs
        hs, yks = tensors[: len(groups)], tensors[len(groups) : 2 * len(groups)]
        need = ctx.needs_input_grad
        need_radial, need_h, need_yk = need[3], need[8 : 8 + len(groups)], need[8 + len(groups) :]
        kept = tensors[2 * len(groups) :]
        columns = [_path_columns(specs, radial.device) for _, specs in groups]
        grad_radial: list[Tensor] = []
        grad_h = [h.new_zeros(h.shape) if n else None for h, n in zip(hs, need_h)]
        grad_yk: list[list[Tensor]] = [[] for _ in groups]
        channels = hs[0].shape[1]
        chunks = _chunks(radial.shape[0], groups, channels, hs[0].element_size())
        for i, c in enumerate(chunks):
            rows = slice(2 * c.start, 2 * c.stop)
            per_pair = radial.new_zeros(radial[c].shape) if need_radial else None
            for n, (h, yk, cols, sign) in enumerate(zip(hs, yks, columns, signs)):
                sign_reverse = reverse[c, None, None] * sign[:, None]  # [G_c, Q_l1, 1]
                yk2 = _both_directions(yk[c], sign_reverse)  # [2G_c, Q_l1, i]
                g = grads[n].index_select(0, nodes[rows])  # [2G_c, Q_l1, C]
                x = h.index_select(0, sources[rows])  # [2G_c, C, i]
                w = radial[c].index_select(1, cols)  # [G_c, Q_l1, C]
                gm = (g.view(-1, 2, *g.shape[1:]) * w[:, None]).view(g.shape)
                if need_radial:
                    if kept and not torch.is_grad_enabled():  # kept (not differentiable)
                        m = kept[i * len(groups) + n]
                    else:  # recomputed, differentiable when the backward pass is
                        m = _messages(yk2, x)
                    both = (g * m).view(-1, 2, *g.shape[1:]).sum(1)  # [G_c, Q_l1, C]
                    per_pair = per_pair.index_add(1, cols, both)
                if need_yk[n]:
                    gy = torch.bmm(gm, x).view(-1, 2, *yk.shape[1:])  # per direction
                    grad_yk[n].append(gy[:, 0] + gy[:, 1] * sign_reverse)  # [G_c, Q_l1, i]
                if need_h[n]:
                    grad_h[n].index_add_(0, sources[rows], torch.bmm(gm.transpose(1, 2), yk2))
            if need_radial:
                grad_radial.append(per_pair)
        grad_r = None
        if need_radial:
            grad_r = torch.cat(grad_radial) if grad_radial else torch.zeros_like(radial)
        grad_yk = [
            (torch.cat(g) if g else torch.zeros_like(yk)) if n else None
            for g, n, yk in zip(grad_yk, need_yk, yks)
        ]
        return (None, None, None, grad_r, None, None, None, None, *grad_h, *grad_yk)


def _rows_by_node(nodes: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """The rows sorted by receiver and the start of every node's rows ``[N + 1]`` (CSR), of
    shapes known without reading values (a traced graph's are symbolic).

    Row ``r ^ 1`` is the other direction of row ``r``, whose receiver is row ``r``'s source, so
    ``order ^ 1`` sorts the rows by source with the same offsets."""
    receivers, order = torch.sort(nodes, stable=True)
    starts = torch.arange(num_nodes + 1, dtype=nodes.dtype, device=nodes.device)
    return order, torch.searchsorted(receivers, starts)


def convolution(
    h: list[Tensor],
    yk: list[Tensor],
    radial: Tensor,
    pairs: PairGraph,
    signs: list[Tensor],
    groups: Groups,
    keep_messages: bool = True,
    kernel: bool = False,
) -> list[Tensor]:
    """Aggregated messages of every block, in the order of ``groups``.

    Args:
        h: node features of each group's ``l1``, ``[N, C, 2l1+1]``.
        yk: channel-free contraction of each group on the first edge of every pair,
            ``[G, Q_l1, 2l1+1]``.
        radial: radial weights per pair ``[G, P, C]``.
        pairs: the pairs (:meth:`PairGraph.from_edges`).
        signs: per group, ``(-1)^l2`` of the path of every column ``[Q_l1]``.
        groups: the blocks of each group.
        keep_messages: allow keeping small messages for the backward pass; pass ``False`` when
            the backward pass will itself be differentiated (training), which recomputes them.
        kernel: run the CPU kernel's operators (``torch.ops.tensorpot.convolution``, its
            library loaded: :func:`tensorpot.nn.cpu_kernel.choose`) where the tensors are on
            the CPU in float32 or float64; otherwise the PyTorch operations.

    Returns:
        ``[N, 2l3+1, P, C]`` per block.
    """
    num_nodes = h[0].shape[0]
    if cpu_kernel.applies(kernel, radial, *h, *yk, *signs):
        order, offsets = _rows_by_node(pairs.nodes, num_nodes)
        aggs = torch.ops.tensorpot.convolution(
            pairs.nodes, pairs.sources, pairs.reverse.to(radial.dtype), radial, order, offsets,
            [x.transpose(1, 2) for x in h], list(yk),
            [_path_columns(specs, radial.device) for _, specs in groups], list(signs),
        )  # fmt: skip
    else:
        aggs = _Convolution.apply(
            pairs.nodes, pairs.sources, pairs.reverse, radial, num_nodes, groups, tuple(signs),
            keep_messages, *h, *yk,
        )  # fmt: skip
    blocks = []
    for agg, (_, specs) in zip(aggs, groups):  # [N, Q_l1, C] -> [N, 2l3+1, P, C] per block
        start = 0
        for l3, count, _ in specs:
            width = count * (2 * l3 + 1)
            blocks.append(agg[:, start : start + width].unflatten(1, (2 * l3 + 1, count)))
            start += width
    return blocks
