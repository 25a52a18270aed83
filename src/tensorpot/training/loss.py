r"""MACE's weighted loss over any mix of targets: energies, forces, stress, virials, dipoles,
polarizabilities and named scalar properties.

For a batch of ``B`` structures with structure weights :math:`w_b`, atom counts :math:`N_b` and
per-structure label masks :math:`m_b` (1 where the structure has the label)

.. math::

    L_E = \frac{\sum_b m_b w_b ((E_b - \hat E_b)/N_b)^2}{\sum_b m_b}, \quad
    L_F = \frac{\sum_{i,\alpha} m_{b(i)} w_{b(i)} (F_{i\alpha} - \hat F_{i\alpha})^2}
        {3 \sum_i m_{b(i)}},

stress per component, and virials, dipoles and polarizabilities per component divided by
:math:`N_b` (as MACE's ``weighted_mean_squared_error_dipole`` and ``..._polarizability``); a
property summed over atoms (extensive) is divided by :math:`N_b`, one averaged over atoms
(intensive) is not. The total is :math:`\sum_t \lambda_t L_t` over the terms whose labels and
predictions are present. Each term is kept as a sum and a count (:class:`TermSums`), so a data
set split into batches gives exactly the data-set mean, whichever structures are labelled.

:class:`EnergyLossSmoothing` replaces the energy term by a running average over batches, as
torchmd-net-style training codes do (optional, off by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from tensorpot.data.batch import Targets
from tensorpot.models.base import Predictions

__all__ = [
    "EnergyLossSmoothing",
    "LossWeights",
    "TermSums",
    "combine_terms",
    "loss_term_sums",
    "weighted_loss",
    "weighted_total",
]

TERMS = ("energy", "forces", "stress", "virials", "dipole", "polarizability")
#: terms whose errors are divided by the structure's atom count
PER_ATOM = frozenset({"energy", "virials", "dipole", "polarizability"})


class LossWeights(NamedTuple):
    """The weights :math:`\\lambda` of the loss terms (``properties``: by property name)."""

    energy: float = 1.0
    forces: float = 100.0
    stress: float = 1.0
    virials: float = 1.0
    dipole: float = 1.0
    polarizability: float = 1.0
    properties: Mapping[str, float] = {}

    def of(self, term: str) -> float:
        """The weight of ``term`` (``"property:<name>"`` for a property, default 1)."""
        if term.startswith("property:"):
            return float(self.properties.get(term.removeprefix("property:"), 1.0))
        return float(getattr(self, term))


class TermSums(NamedTuple):
    """Sum of weighted squared errors of one term and the number of values summed."""

    total: Tensor
    count: int


def _prediction(pred: Predictions, term: str) -> Tensor | None:
    if term.startswith("property:"):
        return (pred.properties or {}).get(term.removeprefix("property:"))
    return getattr(pred, term)


def loss_term_sums(
    pred: Predictions,
    targets: Targets,
    weights: Tensor,
    num_atoms: Tensor,
    batch: Tensor,
    extensive: frozenset[str] = frozenset(),
) -> dict[str, TermSums]:
    """Per-term sums of weighted squared errors for the labelled quantities of a batch.

    Args:
        pred: model predictions (any may be None).
        targets: labels with their per-structure masks; a missing label drops its term.
        weights: structure weights ``[B]``.
        num_atoms: atom count of every structure ``[B]``.
        batch: structure index of every atom ``[N]``.
        extensive: the names of the properties summed over atoms (their errors are divided by
            the atom count).

    Returns:
        ``{term: TermSums}`` for the terms with both a label and a prediction.
    """
    out: dict[str, TermSums] = {}
    num_graphs = len(num_atoms)
    n = num_atoms.to(weights.dtype)
    names = [*TERMS, *(f"property:{p}" for p in (targets.properties or {}))]
    for term in names:
        label, value = targets.label(term), _prediction(pred, term)
        if label is None or value is None:
            continue
        mask = targets.mask(term, num_graphs).to(weights.dtype)  # [B]
        if term == "forces":
            per_atom = (weights * mask)[batch]
            sq = (value - label).square()
            out[term] = TermSums((per_atom[:, None] * sq).sum(), int(mask[batch].sum()) * 3)
            continue
        diff = value - label  # [B, ...]
        property_name = term.removeprefix("property:") if term.startswith("property:") else None
        if term in PER_ATOM or property_name in extensive:
            diff = diff / n.view(-1, *[1] * (diff.dim() - 1))
        sq = diff.square().reshape(num_graphs, -1)  # [B, components]
        total = ((weights * mask)[:, None] * sq).sum()
        out[term] = TermSums(total, int(mask.sum()) * sq.shape[1])
    return out


def combine_terms(
    sums: Mapping[str, TermSums], loss_weights: LossWeights
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and the per-term means from accumulated term sums.

    Returns:
        ``(total, {term: mean})``; the total is the weighted sum of the means (zero when no
        term is present).
    """
    terms = {name: s.total / max(s.count, 1) for name, s in sums.items() if s.count > 0}
    return weighted_total(terms, loss_weights), terms


def weighted_total(terms: Mapping[str, Tensor], loss_weights: LossWeights) -> Tensor:
    r""":math:`\sum_t \lambda_t L_t` over the terms given (zero when there is none)."""
    if not terms:
        return torch.zeros(())
    return sum(loss_weights.of(name) * value for name, value in terms.items())


def weighted_loss(
    pred: Predictions,
    targets: Targets,
    weights: Tensor,
    num_atoms: Tensor,
    batch: Tensor,
    loss_weights: LossWeights,
    extensive: frozenset[str] = frozenset(),
) -> tuple[Tensor, dict[str, Tensor]]:
    """MACE's weighted loss of one batch: ``(total, {term: mean})`` (see the module docs)."""
    sums = loss_term_sums(pred, targets, weights, num_atoms, batch, extensive)
    return combine_terms(sums, loss_weights)


class EnergyLossSmoothing:
    r"""Smoothing of the energy loss over batches (``loss_scale_y`` of torchmd-net-style codes).

    With factor :math:`a`, batch :math:`t` of a chain is trained (or validated) on

    .. math::

        \tilde L_{E,t} = a L_{E,t} + (1 - a)\,\mathrm{stopgrad}(\tilde L_{E,t-1}), \quad
        \tilde L_{E,-1} = \mathrm{stopgrad}(L_{E,0}),

    in place of :math:`L_{E,t}` in the weighted total; the other terms are not smoothed. The
    gradient of the energy MSE is thus weighted by :math:`\lambda_E a` (0.05 · 0.05 in
    a released recipe) while the loss value stays on the scale of :math:`L_E`. As in the
    official code there is one chain for training and one for validation (``"train"``,
    ``"valid"``), each started by its first batch and kept across epochs; a batch without an
    energy term leaves its chain alone. The chain values go into checkpoints
    (:meth:`state_dict`), so a resumed run continues them (the official code restarts them on
    resume, and its validation chain starts in Lightning's two sanity-check batches before
    training; neither is reproduced).
    """

    CHAINS = ("train", "valid")

    def __init__(self, factor: float):
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"the smoothing factor must be in (0, 1], got {factor}")
        self.factor = float(factor)
        self.previous: dict[str, Tensor | None] = dict.fromkeys(self.CHAINS)

    def smooth(self, chain: str, terms: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``terms`` with the energy term replaced by its smoothed value; advances ``chain``."""
        out = dict(terms)
        energy = out.get("energy")
        if energy is None:
            return out
        previous = self.previous[chain]
        previous = energy.detach() if previous is None else previous.to(energy.device)
        out["energy"] = self.factor * energy + (1.0 - self.factor) * previous
        self.previous[chain] = out["energy"].detach()
        return out

    def total(self, chain: str, terms: Mapping[str, Tensor], loss_weights: LossWeights) -> Tensor:
        """The weighted total of one batch's term means with the energy term smoothed."""
        return weighted_total(self.smooth(chain, terms), loss_weights)

    def state_dict(self) -> dict[str, Tensor | None]:
        """The chain values (CPU tensors, None for a chain not started)."""
        return {k: None if v is None else v.cpu() for k, v in self.previous.items()}

    def load_state_dict(self, state: Mapping[str, Tensor | None]) -> None:
        """Continue the chains saved by :meth:`state_dict`."""
        self.previous = {k: state.get(k) for k in self.CHAINS}
