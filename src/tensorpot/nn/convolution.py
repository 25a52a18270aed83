r"""The convolution of the interaction as one autograd node: gather, product, radial weight, sum.

For every block ``(l1, l3)`` of :class:`tensorpot.nn.tensor_product.EdgeTensorProduct`,

.. math::

    A_b[u, k, p, c] = \sum_{e = (u, v)} R[g(e), f_b + p, c]
        \sum_i YK_{l_1}[e, (k, p)_b, i]\, h_{l_1}[v, c, i]

with ``YK`` the channel-free contraction of the edge harmonics with the couplings, ``R`` the
radial weights of the edge's pair ``g(e)`` (:mod:`tensorpot.data.pairs`) and ``f_b`` the first
path of the block. Written with plain operations, autograd would keep every per-edge message
``[E, 2l3+1, P, C]`` (the largest tensors of the model) for the backward pass. This node keeps
only its inputs (node features, the channel-free ``YK``, radial weights per pair) and recomputes
the gathers and messages chunk by chunk of edges when the gradient is taken, which bounds the
extra memory of a large cell by one chunk's messages (:data:`CHUNK_BYTES`); when the messages
of all edges are small (:data:`KEEP_BYTES`) and the model is not training, they are kept
instead of recomputed. The backward pass is written with differentiable operations, so forces
can themselves be differentiated (training on forces).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: per l1 group: (l1, ((l3, number of paths, first path index), ...))
Groups = tuple[tuple[int, tuple[tuple[int, int, int], ...]], ...]

#: edges are processed in chunks whose messages ``[E_chunk, Q_l1, C]`` take at most this many
#: bytes: the transient memory of a large cell is bounded, and a chunk's gather, product and
#: sum run from cache (4 MiB against 256 MiB halved the time per atom of fcc cells of 2,048
#: atoms and more on a 2-core machine, benchmarks/workloads.py --workload fcc)
CHUNK_BYTES = 2**22

#: messages of all chunks together are kept for the backward pass (not recomputed) up to this
#: size: a small graph saves a batched product per group, a large one keeps its memory
KEEP_BYTES = 2**24


def _chunks(num_edges: int, groups: Groups, channels: int, itemsize: int):
    widest = max(sum(count * (2 * l3 + 1) for l3, count, _ in specs) for _, specs in groups)
    size = max(1, CHUNK_BYTES // (widest * channels * itemsize))
    for start in range(0, num_edges, size):
        yield slice(start, min(start + size, num_edges))


@functools.lru_cache(maxsize=256)
def _path_columns(specs: tuple[tuple[int, int, int], ...], device: torch.device) -> Tensor:
    """The path of every column ``(k, p)`` of a group's messages ``[E, Q_l1, C]``."""
    cols = [
        first + p for l3, count, first in specs for _ in range(2 * l3 + 1) for p in range(count)
    ]
    return torch.tensor(cols, dtype=torch.long, device=device)


def _messages(yk: Tensor, x: Tensor) -> Tensor:
    """``[E, Q, i] x [E, C, i] -> [E, Q, C]``; for scalars (``i = 1``) an outer product, which
    runs several times faster than a batched product of 1-wide matrices."""
    return yk * x.transpose(1, 2) if yk.shape[-1] == 1 else torch.bmm(yk, x.transpose(1, 2))


class _Convolution(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centre, neighbour, edge_pair, radial, num_nodes, groups, may_keep, *tensors):
        hs, yks = tensors[: len(groups)], tensors[len(groups) :]
        channels = hs[0].shape[1]
        aggs = [hs[0].new_zeros((num_nodes, yk.shape[1], channels)) for yk in yks]
        chunks = list(_chunks(centre.shape[0], groups, channels, hs[0].element_size()))
        size = centre.shape[0] * channels * sum(yk.shape[1] for yk in yks) * hs[0].element_size()
        keep = may_keep and size <= KEEP_BYTES
        kept = []
        for c in chunks:
            weights = radial.index_select(0, edge_pair[c])  # [E_c, P, C]
            for (_, specs), h, yk, agg in zip(groups, hs, yks, aggs):
                x = h.index_select(0, neighbour[c])  # [E_c, C, i]
                m = _messages(yk[c], x)  # [E_c, Q_l1, C]
                weighted = torch.empty_like(m)
                start = 0
                for l3, count, first in specs:  # block by block, into one buffer
                    width = count * (2 * l3 + 1)
                    block = m[:, start : start + width].unflatten(1, (2 * l3 + 1, count))
                    out = weighted[:, start : start + width].unflatten(1, (2 * l3 + 1, count))
                    torch.mul(block, weights[:, None, first : first + count], out=out)
                    start += width
                agg.index_add_(0, centre[c], weighted)
                if keep:  # small enough to keep (chunk by chunk); otherwise recomputed
                    kept.append(m)
        ctx.save_for_backward(centre, neighbour, edge_pair, radial, *tensors, *kept)
        ctx.groups = groups
        return tuple(aggs)

    @staticmethod
    def backward(ctx, *grads):
        centre, neighbour, edge_pair, radial, *tensors = ctx.saved_tensors
        groups = ctx.groups
        hs, yks = tensors[: len(groups)], tensors[len(groups) : 2 * len(groups)]
        kept = tensors[2 * len(groups) :]
        need = ctx.needs_input_grad
        need_radial, need_h, need_yk = need[3], need[7 : 7 + len(groups)], need[7 + len(groups) :]
        columns = [_path_columns(specs, radial.device) for _, specs in groups]
        grad_radial = radial.new_zeros(radial.shape) if need_radial else None
        grad_h = [h.new_zeros(h.shape) if n else None for h, n in zip(hs, need_h)]
        grad_yk: list[list[Tensor]] = [[] for _ in groups]
        channels = hs[0].shape[1]
        chunks = _chunks(centre.shape[0], groups, channels, hs[0].element_size())
        for i, c in enumerate(chunks):
            weights = radial.index_select(0, edge_pair[c])  # [E_c, P, C]
            per_edge = weights.new_zeros(weights.shape) if need_radial else None
            for n, (h, yk, cols) in enumerate(zip(hs, yks, columns)):
                g = grads[n].index_select(0, centre[c])  # [E_c, Q_l1, C]
                x = h.index_select(0, neighbour[c])  # [E_c, C, i]
                gm = g * weights.index_select(1, cols)  # [E_c, Q_l1, C]
                if need_radial:
                    if kept and not torch.is_grad_enabled():  # kept (not differentiable)
                        m = kept[i * len(groups) + n]
                    else:  # recomputed, differentiable when the backward pass is
                        m = _messages(yk[c], x)
                    per_edge = per_edge.index_add(1, cols, g * m)  # [E_c, P, C]
                if need_yk[n]:
                    grad_yk[n].append(torch.bmm(gm, x))  # [E_c, Q_l1, i]
                if need_h[n]:
                    grad_h[n].index_add_(0, neighbour[c], torch.bmm(gm.transpose(1, 2), yk[c]))
            if need_radial:
                grad_radial.index_add_(0, edge_pair[c], per_edge)
        grad_yk = [torch.cat(g) if n else None for g, n in zip(grad_yk, need_yk)]
        return (None, None, None, grad_radial, None, None, None, *grad_h, *grad_yk)


def convolution(
    h: list[Tensor],
    yk: list[Tensor],
    radial: Tensor,
    edge_index: Tensor,
    edge_pair: Tensor,
    groups: Groups,
    keep_messages: bool = True,
) -> list[Tensor]:
    """Aggregated messages of every block, in the order of ``groups``.

    Args:
        h: node features of each group's ``l1``, ``[N, C, 2l1+1]``.
        yk: channel-free contraction of each group, ``[E, Q_l1, 2l1+1]``.
        radial: radial weights per edge pair ``[G, P, C]``.
        edge_index: ``[2, E]`` (centre, neighbour).
        edge_pair: ``[E]`` the pair of every edge (the row of ``radial``).
        groups: the blocks of each group.
        keep_messages: allow keeping small messages for the backward pass; pass ``False`` when
            the backward pass will itself be differentiated (training), which recomputes them.

    Returns:
        ``[N, 2l3+1, P, C]`` per block.
    """
    num_nodes = h[0].shape[0]
    aggs = _Convolution.apply(
        edge_index[0],
        edge_index[1],
        edge_pair,
        radial,
        num_nodes,
        groups,
        keep_messages,
        *h,
        *yk,
    )
    blocks = []
    for agg, (_, specs) in zip(aggs, groups):  # [N, Q_l1, C] -> [N, 2l3+1, P, C] per block
        start = 0
        for l3, count, _ in specs:
            width = count * (2 * l3 + 1)
            blocks.append(agg[:, start : start + width].unflatten(1, (2 * l3 + 1, count)))
            start += width
    return blocks
