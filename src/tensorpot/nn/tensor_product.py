"""Channel-wise irreducible Cartesian tensor products of path-resolved features.

Every path ``(l1, l2) -> l3`` of a list (:func:`tensorpot.tensors.product_paths`) is evaluated
in compressed storage with the coupling tensors of :func:`tensorpot.tensors.coupling_tensor`,
stacked so that a whole product is a few large matrix products instead of one small operation
per path: :class:`EdgeTensorProduct` for node features with edge harmonics (the convolution),
:class:`NodeTensorProduct` for a product step of the product basis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tensorpot.tensors import Path, coupling_tensor, path_multiplicities


def rank_sizes(multiplicities: Sequence[int]) -> list[int]:
    """Columns of every rank of path-resolved features flattened: ``P_l (2l+1)`` per rank."""
    return [p * (2 * r + 1) for r, p in enumerate(multiplicities)]


class NodeTensorProduct(nn.Module):
    r"""All paths of path-resolved node features with a channel-wise tensor (a product step).

    For ``x[l1] [N, C, P_l1, 2l1+1]`` and ``a [N, C, D_a]`` (ranks ``0..max_l2`` concatenated),

    .. math::  T[l_3][n, c, (p, s), k] = \sum_i x[l_1][n, c, s, i]
        \sum_j a[n, c, j]\, K_p[i, j, k]

    for every path ``p = (l1, l2) -> l3`` and every slot ``s`` of ``x[l1]``. The inner sum (``a``
    with the couplings of all paths that share ``l1``) is one matrix product per ``l1``, done once
    per node and channel whatever the number of slots; the outer one is a second product.
    Output slots of rank ``l3`` are ordered path by path (as listed), ``P_l1`` slots each.

    Args:
        paths: the paths, ordered by ``l3``, then ``l1``, then ``l2``.
        in_multiplicities: slots ``P_l1`` of each rank of ``x``.
        max_l2: largest rank of ``a``.
        max_l3: largest output rank; every rank must be reached.
    """

    def __init__(
        self, paths: Sequence[Path], in_multiplicities: Sequence[int], max_l2: int, max_l3: int
    ):
        super().__init__()
        self.paths = [Path(*p) for p in paths if p.l1 < len(in_multiplicities)]
        self.max_l2, self.max_l3 = max_l2, max_l3
        self.in_multiplicities = list(in_multiplicities)
        self.out_multiplicities = path_multiplicities(self.paths, in_multiplicities, max_l3)
        if min(self.out_multiplicities) == 0:
            raise ValueError(f"output ranks {self.out_multiplicities} not all reached")
        offsets = [r * r for r in range(max_l2 + 2)]
        self.ranks_l1 = sorted({p.l1 for p in self.paths})
        # slot offset of every path inside its output rank
        self.slot_offset, seen = [0] * len(self.paths), [0] * (max_l3 + 1)
        for n, p in enumerate(self.paths):
            self.slot_offset[n] = seen[p.l3]
            seen[p.l3] += self.in_multiplicities[p.l1]
        rank_offset = [sum(self.out_multiplicities[:r]) for r in range(max_l3 + 1)]
        #: per l1: the (l3, number of paths) of each run of paths with the same l3
        self.runs: list[list[tuple[int, int]]] = []
        for k, l1 in enumerate(self.ranks_l1):
            group = [(n, p) for n, p in enumerate(self.paths) if p.l1 == l1]  # by l3, then l2
            width = sum(2 * p.l3 + 1 for _, p in group)
            big = torch.zeros((max_l2 + 1) ** 2, width, 2 * l1 + 1, dtype=torch.float64)
            rows, slots, q = [], [], 0
            for row, (n, p) in enumerate(group):
                block = coupling_tensor(*p).permute(1, 2, 0)  # [2l2+1, 2l3+1, 2l1+1]
                big[offsets[p.l2] : offsets[p.l2 + 1], q : q + 2 * p.l3 + 1] = block
                rows += [row] * (2 * p.l3 + 1)
                start = rank_offset[p.l3] + self.slot_offset[n]
                slots += range(start, start + self.in_multiplicities[l1])
                q += 2 * p.l3 + 1
            self.register_buffer(f"coupling_{k}", big.reshape(big.shape[0], -1))
            # the path (row of the group) of every column, and the weights of every row's slots
            self.register_buffer(f"column_row_{k}", torch.tensor(rows), persistent=False)
            self.register_buffer(f"weight_slots_{k}", torch.tensor(slots), persistent=False)
            runs: list[tuple[int, int]] = []
            for _, p in group:
                if runs and runs[-1][0] == p.l3:
                    runs[-1] = (p.l3, runs[-1][1] + 1)
                else:
                    runs.append((p.l3, 1))
            self.runs.append(runs)

    def dense_coupling(self) -> Tensor:
        r"""All paths as one matrix ``K [D_x D_a, D_T]``: ``T = vec(x \otimes a) K``.

        Rows are ``(l1, slot, i, j)`` of the flattened ``x`` (ranks concatenated, slots then
        components) times ``a``'s components ``j``; columns are ``T``'s ``(l3, slot, k)`` in the
        order of :meth:`forward`. One matrix product per node and channel replaces the per-rank
        products: fewer and larger operations, worth it while ``K`` is small.
        """
        d_a = (self.max_l2 + 1) ** 2
        sizes_in = rank_sizes(self.in_multiplicities)
        sizes_out = rank_sizes(self.out_multiplicities)
        off_in = [sum(sizes_in[:r]) for r in range(len(sizes_in))]
        off_out = [sum(sizes_out[:r]) for r in range(len(sizes_out))]
        dense = torch.zeros(sum(sizes_in), d_a, sum(sizes_out), dtype=torch.float64)
        for n, p in enumerate(self.paths):
            block = coupling_tensor(*p)  # [2l1+1, 2l2+1, 2l3+1]
            d1, d3 = 2 * p.l1 + 1, 2 * p.l3 + 1
            for s in range(self.in_multiplicities[p.l1]):
                row = off_in[p.l1] + s * d1
                col = off_out[p.l3] + (self.slot_offset[n] + s) * d3
                dense[row : row + d1, p.l2**2 : (p.l2 + 1) ** 2, col : col + d3] = block
        return dense.reshape(-1, dense.shape[-1])

    def _contract(self, x: list[Tensor], a: Tensor):
        """Per ``l1``: ``aK [N, C, Q_l1, 2l1+1]``, ``a`` contracted with the group's couplings."""
        for k, l1 in enumerate(self.ranks_l1):
            coupling = getattr(self, f"coupling_{k}")
            ak = (a @ coupling).view(a.shape[0], a.shape[1], -1, 2 * l1 + 1)  # [N, C, Q, i]
            yield k, l1, ak

    def forward(self, x: list[Tensor], a: Tensor) -> list[Tensor]:
        """``x[l1] [N, C, P_l1, 2l1+1]``, ``a [N, C, D_a]`` -> ``T[l3] [N, C, P_l3, 2l3+1]``."""
        # groups run over l1 ascending and paths within a group by l3, then l2: the path order
        pieces: list[list[Tensor]] = [[] for _ in range(self.max_l3 + 1)]
        for k, l1, ak in self._contract(x, a):
            z = x[l1] @ ak.transpose(2, 3)  # [N, C, P_l1, Q_l1]
            widths = [count * (2 * l3 + 1) for l3, count in self.runs[k]]
            for (l3, count), run in zip(self.runs[k], z.split(widths, dim=-1)):
                # [N, C, P_l1, count (2l3+1)] -> count paths of P_l1 slots each
                run = run.unflatten(-1, (count, 2 * l3 + 1)).transpose(2, 3)
                pieces[l3].append(run.flatten(2, 3))
        return [torch.cat(p, dim=2) for p in pieces]

    def weighted(self, x: list[Tensor], a: Tensor, weights: list[Tensor]) -> list[Tensor]:
        """``sum_s w[l3][n, c, s] T[l3][n, c, s, :]`` without materialising ``T``.

        Each path needs only its own columns of ``aK``: the slot-weighted ``x`` of every path
        is spread over that path's columns and contracted elementwise, so no product is formed
        that is thrown away.

        Args:
            x: as in :meth:`forward`.
            a: as in :meth:`forward`.
            weights: ``w[l3] [N, C, P_l3]`` per output rank (the slot order of :meth:`forward`).

        Returns:
            ``[N, C, 2l3+1]`` per output rank.
        """
        out: list[Tensor | None] = [None] * (self.max_l3 + 1)
        flat = torch.cat(weights, dim=2)  # [N, C, sum P_l3]
        for k, l1, ak in self._contract(x, a):
            slots = self.in_multiplicities[l1]
            w = flat.index_select(2, getattr(self, f"weight_slots_{k}"))
            w = w.view(w.shape[0], w.shape[1], -1, slots)  # [N, C, paths of l1, P_l1]
            xw = w @ x[l1] if slots > 1 else w * x[l1]  # [N, C, paths of l1, 2l1+1]
            xq = xw.index_select(2, getattr(self, f"column_row_{k}"))  # [N, C, Q_l1, 2l1+1]
            z = (xq * ak).sum(-1)  # [N, C, Q_l1]
            widths = [count * (2 * l3 + 1) for l3, count in self.runs[k]]
            for (l3, count), run in zip(self.runs[k], z.split(widths, dim=-1)):
                term = run.unflatten(-1, (count, 2 * l3 + 1)).sum(2)
                out[l3] = term if out[l3] is None else out[l3] + term
        return [t for t in out if t is not None]


class EdgeTensorProduct(nn.Module):
    r"""All paths ``(l1, l2) -> l3`` of node features with edge harmonics (the convolution).

    For channel-wise node features gathered on the edges, ``x[l1] [E, C, 2l1+1]``, and
    channel-free edge harmonics ``y [E, D_y]`` (ranks ``0..max_l2`` concatenated),

    .. math::  m[e, k, p, c] = \sum_i x[l_1][e, c, i] \sum_j y[e, j]\, K_p[i, j, k]

    times ``path_scale[l3]``, for every path ``p``. The inner sum is channel-free and done once
    per edge; all paths sharing ``l1`` are stacked, so each input rank costs one matrix product
    and one batched matrix product, whatever its number of paths. The output is channel-last:
    one block ``[E, 2 l3 + 1, P, C]`` per pair ``(l1, l3)`` (``self.blocks``), its ``P`` paths
    ordered by ``l2``, so that a per-edge weight ``[E, P, C]`` multiplies it with contiguous
    inner loops. Concatenating the blocks of an ``l3`` over ``l1`` (on the path axis) gives the
    paths in the listed order (``l3``, then ``l1``, then ``l2``).

    Args:
        paths: the paths, ordered by ``l3``, then ``l1``, then ``l2``.
        max_l1: largest rank of ``x``.
        max_l2: largest rank of ``y``.
        max_l3: largest output rank; every rank must be reached.
        path_scale: a constant per output rank multiplying its paths (e.g. ``P_l3 ** -0.5``).
    """

    def __init__(
        self,
        paths: Sequence[Path],
        max_l1: int,
        max_l2: int,
        max_l3: int,
        path_scale: Sequence[float] | None = None,
    ):
        super().__init__()
        self.paths = [Path(*p) for p in paths]
        self.multiplicities = path_multiplicities(self.paths, [1] * (max_l1 + 1), max_l3)
        if min(self.multiplicities) == 0:
            raise ValueError(f"output ranks {self.multiplicities} not all reached")
        offsets = [r * r for r in range(max_l2 + 2)]
        self.ranks_l1 = sorted({p.l1 for p in self.paths})
        #: per l1 group: the (l3, number of paths, first path index) of each output block
        self.blocks: list[list[tuple[int, int, int]]] = []
        self.widths: list[list[int]] = []  # per l1 group: (2 l3 + 1) P of each block
        for l1 in self.ranks_l1:
            specs, pieces, signs = [], [], []
            for l3 in sorted({p.l3 for p in self.paths if p.l1 == l1}):
                group = [(n, p) for n, p in enumerate(self.paths) if (p.l1, p.l3) == (l1, l3)]
                signs += [(-1.0) ** p.l2 for _ in range(2 * l3 + 1) for _, p in group]
                big = torch.zeros(
                    (max_l2 + 1) ** 2, 2 * l3 + 1, len(group), 2 * l1 + 1, dtype=torch.float64
                )  # [j, k, p, i]
                for slot, (_, p) in enumerate(group):
                    scale = 1.0 if path_scale is None else path_scale[l3]
                    block = scale * coupling_tensor(*p).permute(1, 2, 0)  # [2l2+1, 2l3+1, 2l1+1]
                    big[offsets[p.l2] : offsets[p.l2 + 1], :, slot, :] = block
                pieces.append(big.flatten(1, 2))
                specs.append((l3, len(group), group[0][0]))
            coupling = torch.cat(pieces, dim=1)  # [D_y, Q_l1, 2l1+1], blocks one after another
            self.register_buffer(f"coupling_{l1}", coupling.flatten(1))
            # (-1)^l2 of every column: YK of the reversed edge, since T(-r) = (-1)^l2 T(r)
            self.register_buffer(
                f"reverse_sign_{l1}", torch.tensor(signs, dtype=torch.float64), persistent=False
            )
            self.blocks.append(specs)
            self.widths.append([piece.shape[1] for piece in pieces])

    def reverse_signs(self) -> list[Tensor]:
        """Per ``l1`` group, ``(-1)^l2`` of the path of every column ``[Q_l1]``: the factor
        between ``YK`` of an edge and of its reverse."""
        return [getattr(self, f"reverse_sign_{l1}") for l1 in self.ranks_l1]

    def channel_free(self, y: Tensor) -> list[Tensor]:
        """The inner, channel-free sum of every ``l1`` group: ``YK [E, Q_l1, 2l1+1]``."""
        out = []
        for l1 in self.ranks_l1:
            coupling = getattr(self, f"coupling_{l1}")  # [D_y, Q_l1 (2l1+1)]
            width = coupling.shape[1] // (2 * l1 + 1)  # explicit: an empty y (no edges) has no -1
            out.append((y @ coupling).view(y.shape[0], width, 2 * l1 + 1))
        return out

    def forward(self, x: list[Tensor], y: Tensor) -> list[list[Tensor]]:
        """``x[l1] [E, C, 2l1+1]``, ``y [E, D_y]`` -> per ``l1`` group, ``[E, 2l3+1, P, C]``."""
        out = []
        for l1, yk, specs, widths in zip(
            self.ranks_l1, self.channel_free(y), self.blocks, self.widths
        ):
            m = torch.bmm(yk, x[l1].transpose(1, 2))  # [E, Q_l1, C]
            out.append(
                [
                    block.unflatten(1, (2 * l3 + 1, count))
                    for block, (l3, count, _) in zip(m.split(widths, dim=1), specs)
                ]
            )
        return out
