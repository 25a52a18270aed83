"""A smooth, species-dependent pair potential: a test-only :class:`Potential` (no tests here).

Each directed edge ``u -> v`` gives its centre ``u`` half the pair energy
``phi_ab(r) = eps_ab * (exp(-2 a (r - r0)) - 2 exp(-a (r - r0))) * (1 - (r / r_max)^2)^3``,
a Morse well times an envelope that vanishes with its first two derivatives at ``r_max``.
``eps_ab`` is a symmetric matrix over species ``a = s_u``, ``b = s_v``, so elements matter and
the total is the plain pair sum ``sum_{pairs} phi``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from tensorpot.models.base import Geometry, Potential


def pair_energy(r: Tensor, eps: Tensor, r_max: float, r0: float = 1.4, a: float = 1.5) -> Tensor:
    """Pair energy ``phi(r)`` [E] (eV) of distances ``r`` [E] with well depths ``eps`` [E]."""
    x = torch.exp(-a * (r - r0))
    envelope = (1.0 - (r / r_max) ** 2).clamp(min=0.0) ** 3
    return eps * (x * x - 2.0 * x) * envelope


class PairPotential(Potential):
    """A Morse-like pair potential with per-species-pair depths.

    Args:
        atomic_numbers: elements the model knows.
        r_max: cutoff (Å).
        seed: seed of the random symmetric depth matrix ``[S, S]`` (values in 0.5-1.5 eV).
        E0s: per-element reference energies (eV).
    """

    def __init__(
        self,
        atomic_numbers: Sequence[int] = (1, 6, 7, 8),
        r_max: float = 4.0,
        seed: int = 0,
        E0s: Sequence[float] | None = None,
    ):
        super().__init__(atomic_numbers, r_max, E0s=E0s)
        s = len(atomic_numbers)
        g = torch.Generator().manual_seed(seed)
        depth = 0.5 + torch.rand(s, s, generator=g, dtype=torch.float64)
        self.register_buffer("depth", 0.5 * (depth + depth.T))

    def pair_depths(self, species_i: Tensor, species_j: Tensor) -> Tensor:
        """Well depth ``eps_ab`` [E] of each edge from the species of both ends."""
        return self.depth[species_i, species_j]

    def site_energies(self, geometry: Geometry) -> Tensor:
        """Half the pair energy of every edge, summed on its centre: ``[N]``."""
        centre, neighbour = geometry.edge_index
        r = torch.linalg.vector_norm(geometry.edge_vectors, dim=-1)  # [E]
        eps = self.pair_depths(geometry.species[centre], geometry.species[neighbour])
        phi = pair_energy(r, eps, self.r_max)
        out = torch.zeros(len(geometry.species), dtype=phi.dtype, device=phi.device)
        return out.index_add(0, centre, 0.5 * phi)
