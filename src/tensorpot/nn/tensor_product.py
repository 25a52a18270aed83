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
        self.max_l3 = max_l3
        self.in_multiplicities = list(in_multiplicities)
        self.out_multiplicities = path_multiplicities(self.paths, in_multiplicities, max_l3)
        if min(self.out_multiplicities) == 0:
            raise ValueError(f"output ranks {self.out_multiplicities} not all reached")
        offsets = [r * r for r in range(max_l2 + 2)]
        self.ranks_l1 = sorted({p.l1 for p in self.paths})
        self.columns: list[list[tuple[int, int, int]]] = []  # per l1: (path index, start, stop)
        for k, l1 in enumerate(self.ranks_l1):
            group = [(n, p) for n, p in enumerate(self.paths) if p.l1 == l1]
            width = sum(2 * p.l3 + 1 for _, p in group)
            big = torch.zeros((max_l2 + 1) ** 2, 2 * l1 + 1, width, dtype=torch.float64)
            cols, q = [], 0
            for n, p in group:
                block = coupling_tensor(*p).permute(1, 0, 2)  # [2l2+1, 2l1+1, 2l3+1]
                big[offsets[p.l2] : offsets[p.l2 + 1], :, q : q + 2 * p.l3 + 1] = block
                cols.append((n, q, q + 2 * p.l3 + 1))
                q += 2 * p.l3 + 1
            self.register_buffer(f"coupling_{k}", big.reshape(big.shape[0], -1))
            self.columns.append(cols)
        # slot offset of every path inside its output rank
        self.slot_offset, seen = [0] * len(self.paths), [0] * (max_l3 + 1)
        for n, p in enumerate(self.paths):
            self.slot_offset[n] = seen[p.l3]
            seen[p.l3] += self.in_multiplicities[p.l1]

    def _contract(self, x: list[Tensor], a: Tensor):
        """Per ``l1``: ``z [N, C, P_l1, Q_l1] = x[l1] @ (a K)``."""
        for k, l1 in enumerate(self.ranks_l1):
            coupling = getattr(self, f"coupling_{k}")
            ak = (a @ coupling).view(a.shape[0], a.shape[1], 2 * l1 + 1, -1)  # [N, C, i, Q]
            yield k, l1, ak

    def forward(self, x: list[Tensor], a: Tensor) -> list[Tensor]:
        """``x[l1] [N, C, P_l1, 2l1+1]``, ``a [N, C, D_a]`` -> ``T[l3] [N, C, P_l3, 2l3+1]``."""
        # groups run over l1 ascending and paths within a group by l2, which is the path order
        pieces: list[list[Tensor]] = [[] for _ in range(self.max_l3 + 1)]
        for k, l1, ak in self._contract(x, a):
            z = x[l1] @ ak  # [N, C, P_l1, Q_l1]
            for n, start, stop in self.columns[k]:
                pieces[self.paths[n].l3].append(z[..., start:stop])
        return [torch.cat(p, dim=2) for p in pieces]

    def weighted(self, x: list[Tensor], a: Tensor, weights: list[Tensor]) -> list[Tensor]:
        """``sum_s w[l3][n, c, s] T[l3][n, c, s, :]`` without materialising ``T``.

        Args:
            x: as in :meth:`forward`.
            a: as in :meth:`forward`.
            weights: ``w[l3] [N, C, P_l3]`` per output rank (the slot order of :meth:`forward`).

        Returns:
            ``[N, C, 2l3+1]`` per output rank.
        """
        out: list[Tensor | None] = [None] * (self.max_l3 + 1)
        for k, l1, ak in self._contract(x, a):
            slots = self.in_multiplicities[l1]
            w = torch.stack(
                [
                    weights[self.paths[n].l3][
                        ..., self.slot_offset[n] : self.slot_offset[n] + slots
                    ]
                    for n, _, _ in self.columns[k]
                ],
                dim=2,
            )  # [N, C, paths of l1, P_l1]
            z = (w @ x[l1]) @ ak  # [N, C, paths of l1, Q_l1]
            for row, (n, start, stop) in enumerate(self.columns[k]):
                l3 = self.paths[n].l3
                term = z[:, :, row, start:stop]
                out[l3] = term if out[l3] is None else out[l3] + term
        return [t for t in out if t is not None]


class EdgeTensorProduct(nn.Module):
    r"""All paths ``(l1, l2) -> l3`` of node features with edge harmonics (the convolution).

    For channel-wise node features gathered on the edges, ``x[l1] [E, C, 2l1+1]``, and
    channel-free edge harmonics ``y [E, D_y]`` (ranks ``0..max_l2`` concatenated),

    .. math::  m[e, c, (p, k)] = \sum_i x[l_1][e, c, i] \sum_j y[e, j]\, K_p[i, j, k]

    times ``path_scale[l3]``, for every path ``p``. The inner sum is channel-free and done once
    per edge; paths sharing ``l1`` are stacked, so each input rank costs one matrix product and
    one batched matrix product. The output is one block ``[E, C, P, 2 l3 + 1]`` per pair
    ``(l1, l3)`` (``self.blocks``), its ``P`` paths ordered by ``l2``: concatenating the blocks of
    an ``l3`` over ``l1`` gives the paths in the listed order (``l3``, then ``l1``, then ``l2``).

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
        for l1 in self.ranks_l1:
            specs = []
            for l3 in sorted({p.l3 for p in self.paths if p.l1 == l1}):
                group = [(n, p) for n, p in enumerate(self.paths) if (p.l1, p.l3) == (l1, l3)]
                big = torch.zeros(
                    (max_l2 + 1) ** 2, 2 * l1 + 1, len(group), 2 * l3 + 1, dtype=torch.float64
                )
                for slot, (_, p) in enumerate(group):
                    scale = 1.0 if path_scale is None else path_scale[l3]
                    block = scale * coupling_tensor(*p).permute(1, 0, 2)  # [2l2+1, 2l1+1, 2l3+1]
                    big[offsets[p.l2] : offsets[p.l2 + 1], :, slot, :] = block
                self.register_buffer(f"coupling_{l1}_{l3}", big.reshape(big.shape[0], -1))
                specs.append((l3, len(group), group[0][0]))
            self.blocks.append(specs)

    def forward(self, x: list[Tensor], y: Tensor) -> list[list[Tensor]]:
        """``x[l1] [E, C, 2l1+1]``, ``y [E, D_y]`` -> per ``l1`` group, ``[E, C, P, 2l3+1]``."""
        out = []
        for l1, specs in zip(self.ranks_l1, self.blocks):
            blocks = []
            for l3, count, _ in specs:
                coupling = getattr(self, f"coupling_{l1}_{l3}")
                yk = (y @ coupling).view(y.shape[0], 2 * l1 + 1, -1)  # [E, 2l1+1, P (2l3+1)]
                m = torch.bmm(x[l1], yk)  # [E, C, P (2l3+1)]
                blocks.append(m.view(m.shape[0], m.shape[1], count, 2 * l3 + 1))
            out.append(blocks)
        return out
