r"""Edges that are one pair seen from both ends.

A full neighbour list holds every pair twice: ``u -> v`` with shift :math:`s` and ``v -> u``
with shift :math:`-s`. Their vectors are exact negatives,
:math:`x_v - x_u + s\,\mathrm{cell} = -(x_u - x_v - s\,\mathrm{cell})`, so their lengths are the
same function of the positions (and bitwise equal: IEEE subtraction and addition commute with
negation). Anything that depends on the length alone, like a radial MLP, can then be evaluated
once per pair and gathered back to both edges; the gradient of the shared length with respect to
the positions is the gradient of either edge's length, so forces and stress stay exact.

Grouping is by the integer identity ``(centre, neighbour, shift)`` of an edge, never by the
value of its length: two unrelated edges of equal length (common in a crystal) stay apart, and
an edge whose reverse is missing is a group of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor


def edge_pairs(edge_index: Tensor, cell_shifts: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Group the edges of a graph with their reverses.

    Args:
        edge_index: ``[2, E]`` (centre, neighbour).
        cell_shifts: ``[E, 3]`` integer shifts of the neighbour (any dtype holding integers).
        num_nodes: ``N``, number of nodes of the graph.

    Returns:
        ``(first, group)``: ``first [G]`` the index of one edge of every group, ``group [E]`` the
        group of every edge, so that ``f(lengths[first])[group] == f(lengths)`` for any function
        ``f`` of the edge length.

    Raises:
        ValueError: if a group holds more than two edges (a duplicated edge).
    """
    num_edges = edge_index.shape[1]
    device = edge_index.device
    if num_edges == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    shifts = torch.round(cell_shifts).to(torch.long)
    base = 2 * int(shifts.abs().max()) + 1
    if num_nodes**2 * base**3 >= 2**62:
        raise ValueError(f"graph too large to key its edges ({num_nodes} nodes, shifts {base})")
    centre, neighbour = edge_index[0], edge_index[1]

    def key(a: Tensor, b: Tensor, s: Tensor) -> Tensor:
        s = s + base // 2  # 0 .. base-1
        return ((a * num_nodes + b) * base + s[:, 0]) * base**2 + s[:, 1] * base + s[:, 2]

    forward, backward = key(centre, neighbour, shifts), key(neighbour, centre, -shifts)
    keys, group = torch.unique(torch.minimum(forward, backward), return_inverse=True)
    if int(torch.bincount(group).max()) > 2:
        raise ValueError("an edge pair holds more than two edges (duplicated edges)")
    first = torch.full((keys.shape[0],), num_edges, dtype=torch.long, device=device)
    first = first.scatter_reduce(
        0, group, torch.arange(num_edges, device=device), reduce="amin", include_self=True
    )
    return first, group
