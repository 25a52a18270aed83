"""Channel-wise irreducible Cartesian tensor products of path-resolved features.

One :class:`CartesianTensorProduct` evaluates every path ``(l1, l2) -> l3`` of a list
(:func:`tensorpot.tensors.product_paths`) in compressed storage. Paths that share the input
ranks ``(l1, l2)`` are stacked into one coupling matrix, so each pair costs one outer product and
one matrix multiplication whatever the number of output ranks.

Shapes: ``x[l1]`` is ``[M, C, P_l1, 2l1+1]`` (``P_l1`` path slots), ``y[l2]`` is
``[M, C or 1, 2l2+1]``; the output ``out[l3]`` is ``[M, C, P_out_l3, 2l3+1]`` whose slots are
ordered path by path (as listed), each path contributing ``P_l1`` slots.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from tensorpot.tensors import Path, coupling_tensor, path_multiplicities


class CartesianTensorProduct(nn.Module):
    """Evaluates a fixed list of product paths (ICTP Eq. (2)) on compressed features.

    Args:
        paths: the paths, as from :func:`tensorpot.tensors.product_paths` (ordered by ``l3``,
            then ``l1``, then ``l2``).
        in_multiplicities: path slots ``P_l1`` carried by each rank of ``x``.
        max_l3: largest output rank; every rank ``0..max_l3`` must be reached by a path.
    """

    def __init__(self, paths: Sequence[Path], in_multiplicities: Sequence[int], max_l3: int):
        super().__init__()
        self.paths = [Path(*p) for p in paths if p.l1 < len(in_multiplicities)]
        self.max_l3 = max_l3
        self.out_multiplicities = path_multiplicities(self.paths, in_multiplicities, max_l3)
        if min(self.out_multiplicities) == 0:
            raise ValueError(f"output ranks {self.out_multiplicities} not all reached")
        pairs = sorted({(p.l1, p.l2) for p in self.paths})
        self.pairs = pairs
        self.pair_targets: list[list[int]] = []
        for k, (l1, l2) in enumerate(pairs):
            targets = [p.l3 for p in self.paths if (p.l1, p.l2) == (l1, l2)]
            blocks = [coupling_tensor(l1, l2, l3).reshape(-1, 2 * l3 + 1) for l3 in targets]
            self.register_buffer(f"coupling_{k}", torch.cat(blocks, dim=1))
            self.pair_targets.append(targets)
        # position of each path's block within its output rank, in the order of self.paths
        self.order = [
            [pairs.index((p.l1, p.l2)) for p in self.paths if p.l3 == l3]
            for l3 in range(max_l3 + 1)
        ]

    def forward(self, x: list[Tensor], y: list[Tensor]) -> list[Tensor]:
        pieces: list[dict[int, Tensor]] = [{} for _ in range(self.max_l3 + 1)]
        for k, (l1, l2) in enumerate(self.pairs):
            a, b = x[l1], y[l2]  # [M, C, P, i], [M, C', j]
            outer = a.unsqueeze(-1) * b[:, :, None, None, :]  # [M, C, P, i, j]
            z = outer.flatten(-2) @ getattr(self, f"coupling_{k}")  # [M, C, P, sum(2 l3 + 1)]
            for l3, block in zip(
                self.pair_targets[k], z.split([2 * t + 1 for t in self.pair_targets[k]], dim=-1)
            ):
                pieces[l3][k] = block
        return [
            torch.cat([pieces[l3][k] for k in self.order[l3]], dim=2)
            for l3 in range(self.max_l3 + 1)
        ]


class EdgeTensorProduct(nn.Module):
    r"""All paths ``(l1, l2) -> l3`` of node features with edge harmonics, as one batched matmul.

    For channel-wise node features gathered on the edges, ``x [E, C, D_x]`` (ranks
    ``0..max_l1`` concatenated, one slot each), and channel-free edge harmonics
    ``y [E, D_y]``, the messages of every path are

    .. math::  m[e, c, q] = \sum_i x[e, c, i] \sum_j y[e, j]\, K[i, j, q]

    where ``K [D_x, D_y, Q]`` stacks the coupling tensors of all paths, times ``path_scale``.
    The inner sum is channel-free and is done once per edge; the outer one is one ``bmm``.
    The output columns ``q`` are ordered by ``l3``, then path (as listed), then component, so
    that ``out.split(self.sizes, -1)[l3].view(E, C, P_l3, 2 l3 + 1)``.

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
        offsets_x = [r * r for r in range(max_l1 + 2)]
        offsets_y = [r * r for r in range(max_l2 + 2)]
        total = sum(2 * p.l3 + 1 for p in self.paths)
        big = torch.zeros((max_l1 + 1) ** 2, (max_l2 + 1) ** 2, total, dtype=torch.float64)
        q = 0
        for p in self.paths:
            scale = 1.0 if path_scale is None else path_scale[p.l3]
            block = slice(q, q + 2 * p.l3 + 1)
            rows = slice(offsets_x[p.l1], offsets_x[p.l1 + 1])
            cols = slice(offsets_y[p.l2], offsets_y[p.l2 + 1])
            big[rows, cols, block] = scale * coupling_tensor(*p)
            q += 2 * p.l3 + 1
        self.register_buffer("coupling", big.permute(1, 0, 2).reshape(big.shape[1], -1))
        self.dim_x, self.num_columns = big.shape[0], total
        self.sizes = [p * (2 * r + 1) for r, p in enumerate(self.multiplicities)]
        # path index of every output column, to expand per-path weights [.., P] to [.., Q]
        path_of_column = [k for k, p in enumerate(self.paths) for _ in range(2 * p.l3 + 1)]
        self.register_buffer("path_of_column", torch.tensor(path_of_column), persistent=False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x [E, C, D_x]``, ``y [E, D_y]`` -> ``[E, C, Q]``."""
        yk = (y @ self.coupling).view(y.shape[0], self.dim_x, self.num_columns)  # [E, D_x, Q]
        return torch.bmm(x, yk)
