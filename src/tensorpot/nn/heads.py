r"""Output heads: per-atom features in, per-structure tensors and properties out.

A family's representation gives every atom invariant scalars ``s_u [S]``, rank-1 features
``v_u [V, 3]`` and rank-2 symmetric traceless features ``T_u [T, 3, 3]`` (Cartesian,
:class:`tensorpot.models.base.Features`). The heads combine them with learned weights that
act on the channel index only, so every output has the symmetry of its formula:

- :class:`DipoleHead`: :math:`\mu = \sum_u q_u (r_u - r_c) + p_u`, charges
  :math:`q_u = \mathrm{MLP}(s_u)` shifted per structure to sum to its total charge :math:`Q`,
  atomic dipoles :math:`p_u = \sum_c w_c v_{uc}`, :math:`r_c` the structure's centre of
  positions. A polar vector: rotates and changes sign under inversion with the positions, and
  independent of the origin. (The total charge enters as a uniform shift of the charges, which
  cancels in the sum about the centre of positions: it shapes the charges, not the dipole.)
- :class:`PolarizabilityHead`: :math:`\alpha = \sum_u a_u I + A_u`, :math:`a_u = \mathrm{MLP}(s_u)`,
  :math:`A_u = \sum_c w_c T_{uc}`: symmetric, :math:`R \alpha R^T` under a rotation, invariant
  under inversion.
- :class:`PropertyHead`: a named scalar :math:`P = \mathrm{reduce}_u (\sigma\, \mathrm{MLP}(s_u)
  + \mu_0)`, the sum over atoms (extensive: U0, H, ...) or the mean (intensive: HOMO, gap, ...).

Each returns the per-structure output ``[B, ...]``; ``index_add_`` sums over the atoms of a
structure.
"""

from __future__ import annotations

from torch import Tensor, nn

from tensorpot.nn.activations import ScaledSiLU
from tensorpot.nn.radial import NormalizedLinear


def _mlp(inputs: int, hidden: int) -> nn.Sequential:
    """``[N, inputs] -> [N, 1]``: ``inputs -> hidden -> 1`` with a scaled SiLU."""
    return nn.Sequential(
        NormalizedLinear(inputs, hidden), ScaledSiLU(), NormalizedLinear(hidden, 1)
    )


def _per_structure(values: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    """Sum ``values [N, ...]`` over the atoms of each structure: ``[B, ...]``."""
    out = values.new_zeros((num_graphs, *values.shape[1:]))
    return out.index_add_(0, batch, values)


class DipoleHead(nn.Module):
    """``mu [B, 3]`` from scalar and rank-1 features (units of the training labels).

    Args:
        num_scalars: ``S``, invariant features per atom.
        num_vectors: ``V``, rank-1 features per atom.
        hidden: width of the charge MLP.
    """

    def __init__(self, num_scalars: int, num_vectors: int, hidden: int = 16):
        super().__init__()
        self.charge = _mlp(num_scalars, hidden)
        self.atomic_dipole = NormalizedLinear(num_vectors, 1)

    def charges(
        self, scalars: Tensor, batch: Tensor, num_graphs: int, total_charge: Tensor
    ) -> Tensor:
        """Atomic charges ``q [N]`` that sum to ``total_charge [B]`` in every structure."""
        raw = self.charge(scalars).squeeze(-1)  # [N]
        count = _per_structure(raw.new_ones(raw.shape), batch, num_graphs)  # [B]
        excess = (_per_structure(raw, batch, num_graphs) - total_charge.to(raw)) / count
        return raw - excess[batch]

    def forward(
        self, scalars: Tensor, vectors: Tensor, positions: Tensor, batch: Tensor, num_graphs: int
    ) -> Tensor:
        """``scalars [N, S]``, ``vectors [N, V, 3]``, ``positions [N, 3]`` -> ``mu [B, 3]``.

        The unshifted charges serve: shifting them to any total charge changes every atom's
        charge in a structure by the same amount, which adds nothing about the centre."""
        q = self.charge(scalars).squeeze(-1)  # [N]
        # the shape, not len(), which would fix a traced graph's number of atoms
        count = _per_structure(positions.new_ones(positions.shape[0]), batch, num_graphs)
        centre = _per_structure(positions, batch, num_graphs) / count[:, None]  # [B, 3]
        p = self.atomic_dipole(vectors.transpose(1, 2)).squeeze(-1)  # [N, 3]
        return _per_structure(q[:, None] * (positions - centre[batch]) + p, batch, num_graphs)


class PolarizabilityHead(nn.Module):
    """``alpha [B, 3, 3]`` from scalar and rank-2 features (units of the training labels).

    Args:
        num_scalars: ``S``, invariant features per atom.
        num_tensors: ``T``, rank-2 features per atom.
        hidden: width of the isotropic part's MLP.
    """

    def __init__(self, num_scalars: int, num_tensors: int, hidden: int = 16):
        super().__init__()
        self.isotropic = _mlp(num_scalars, hidden)
        self.anisotropic = NormalizedLinear(num_tensors, 1)

    def forward(self, scalars: Tensor, tensors: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """``scalars [N, S]``, ``tensors [N, T, 3, 3]`` -> ``alpha [B, 3, 3]``."""
        a = self.isotropic(scalars).squeeze(-1)  # [N]
        big_a = self.anisotropic(tensors.permute(0, 2, 3, 1)).squeeze(-1)  # [N, 3, 3]
        eye = big_a.new_zeros(3, 3).fill_diagonal_(1.0)
        return _per_structure(a[:, None, None] * eye + big_a, batch, num_graphs)


class PropertyHead(nn.Module):
    """A named scalar property per structure, ``[B]``: sum or mean over atoms of an MLP.

    Args:
        num_scalars: ``S``, invariant features per atom.
        reduction: ``"sum"`` (extensive) or ``"mean"`` (intensive).
        shift: added to every atom's value (for ``"sum"``, the label's mean per atom; for
            ``"mean"``, its mean), so training starts near the labels.
        scale: multiplies the MLP's output (the labels' spread).
        hidden: width of the MLP.
    """

    def __init__(
        self,
        num_scalars: int,
        reduction: str = "sum",
        shift: float = 0.0,
        scale: float = 1.0,
        hidden: int = 16,
    ):
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.reduction = reduction
        self.shift, self.scale = float(shift), float(scale)
        self.net = _mlp(num_scalars, hidden)

    def forward(self, scalars: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
        """``scalars [N, S]`` -> ``[B]`` float64."""
        # the shift in float64: a total such as U0 (-10^4 eV) is not quantised in float32
        values = (self.scale * self.net(scalars).squeeze(-1)).double() + self.shift  # [N]
        total = _per_structure(values, batch, num_graphs)
        if self.reduction == "sum":
            return total
        return total / _per_structure(values.new_ones(values.shape), batch, num_graphs)
