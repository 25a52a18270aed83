r"""The weighted loss of MACE ("weighted"): energy per atom, forces, stress and virials.

For a batch of ``B`` structures with structure weights :math:`w_b` and atom counts :math:`N_b`

.. math::

    L_E = \frac{1}{B}\sum_b w_b \Big(\frac{E_b - \hat E_b}{N_b}\Big)^2, \quad
    L_F = \frac{1}{3N}\sum_{i,\alpha} w_{b(i)} (F_{i\alpha} - \hat F_{i\alpha})^2,

    L_\sigma = \frac{1}{9B}\sum_{b,\alpha\beta} w_b (\sigma_{b\alpha\beta}
        - \hat\sigma_{b\alpha\beta})^2, \quad
    L_W = \frac{1}{9B}\sum_{b,\alpha\beta} w_b \Big(\frac{W_{b\alpha\beta}
        - \hat W_{b\alpha\beta}}{N_b}\Big)^2

and the total is :math:`\lambda_E L_E + \lambda_F L_F + \lambda_\sigma L_\sigma + \lambda_W L_W`
over the terms whose labels (and predictions) are present. Each term is kept as a sum and a
count (:class:`TermSums`), so a data set split into batches gives exactly the data-set mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from tensorpot.data.batch import Targets
from tensorpot.models.base import Predictions

__all__ = ["LossWeights", "TermSums", "combine_terms", "loss_term_sums", "weighted_loss"]

TERMS = ("energy", "forces", "stress", "virials")


class LossWeights(NamedTuple):
    """The weights :math:`\\lambda` of the four loss terms."""

    energy: float = 1.0
    forces: float = 100.0
    stress: float = 1.0
    virials: float = 1.0


class TermSums(NamedTuple):
    """Sum of weighted squared errors of one term and the number of values summed."""

    total: Tensor
    count: int


def loss_term_sums(
    pred: Predictions, targets: Targets, weights: Tensor, num_atoms: Tensor, batch: Tensor
) -> dict[str, TermSums]:
    """Per-term sums of weighted squared errors for the labelled quantities of a batch.

    Args:
        pred: model predictions (``energy [B]``, ``forces [N, 3]``, ``stress``/``virials``
            ``[B, 3, 3]``; any may be None).
        targets: labels; a missing label drops its term.
        weights: structure weights ``[B]``.
        num_atoms: atom count of every structure ``[B]``.
        batch: structure index of every atom ``[N]``.

    Returns:
        ``{term: TermSums}`` for the terms with both a label and a prediction.
    """
    out: dict[str, TermSums] = {}
    n = num_atoms.to(weights.dtype)
    if targets.energy is not None:
        sq = ((pred.energy - targets.energy) / n).square()
        out["energy"] = TermSums((weights * sq).sum(), sq.numel())
    if targets.forces is not None and pred.forces is not None:
        sq = (pred.forces - targets.forces).square()
        out["forces"] = TermSums((weights[batch, None] * sq).sum(), sq.numel())
    if targets.stress is not None and pred.stress is not None:
        sq = (pred.stress - targets.stress).square()
        out["stress"] = TermSums((weights[:, None, None] * sq).sum(), sq.numel())
    if targets.virials is not None and pred.virials is not None:
        sq = ((pred.virials - targets.virials) / n[:, None, None]).square()
        out["virials"] = TermSums((weights[:, None, None] * sq).sum(), sq.numel())
    return out


def combine_terms(
    sums: Mapping[str, TermSums], loss_weights: LossWeights
) -> tuple[Tensor, dict[str, Tensor]]:
    """Total loss and the per-term means from accumulated term sums.

    Returns:
        ``(total, {term: mean})``; the total is the weighted sum of the means (zero when no
        term is present).
    """
    terms = {name: s.total / max(s.count, 1) for name, s in sums.items()}
    if not terms:
        return torch.zeros(()), terms
    total = sum(getattr(loss_weights, name) * value for name, value in terms.items())
    return total, terms


def weighted_loss(
    pred: Predictions,
    targets: Targets,
    weights: Tensor,
    num_atoms: Tensor,
    batch: Tensor,
    loss_weights: LossWeights,
) -> tuple[Tensor, dict[str, Tensor]]:
    """MACE's weighted loss of one batch: ``(total, {term: mean})`` (see the module docs)."""
    return combine_terms(loss_term_sums(pred, targets, weights, num_atoms, batch), loss_weights)
