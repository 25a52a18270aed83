"""The weighted loss against its closed form, term by term, and its batching invariance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tensorpot.data.batch import Targets
from tensorpot.models.base import Predictions
from tensorpot.training.loss import (
    LossWeights,
    TermSums,
    combine_terms,
    loss_term_sums,
    weighted_loss,
)


def random_batch(seed: int, counts: list[int]):
    """Predictions, labels (all four kinds), weights, atom counts and batch vector."""
    g = torch.Generator().manual_seed(seed)
    b, n = len(counts), sum(counts)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    pred = Predictions(rand(b), rand(n), rand(n, 3), rand(b, 3, 3), rand(b, 3, 3))
    targets = Targets(rand(b), rand(n, 3), rand(b, 3, 3), rand(b, 3, 3))
    weights = torch.rand(b, generator=g, dtype=torch.float64) + 0.5
    num_atoms = torch.tensor(counts)
    batch = torch.repeat_interleave(torch.arange(b), num_atoms)
    return pred, targets, weights, num_atoms, batch


def closed_form(pred, targets, weights, counts, lw: LossWeights) -> float:
    """The loss written out with Python loops over structures and atoms."""
    b = len(counts)
    energy = (
        sum(
            float(weights[k])
            * ((float(pred.energy[k]) - float(targets.energy[k])) / counts[k]) ** 2
            for k in range(b)
        )
        / b
    )
    forces, atom = 0.0, 0
    for k, count in enumerate(counts):
        for _ in range(count):
            diff = pred.forces[atom] - targets.forces[atom]
            forces += float(weights[k]) * float((diff**2).sum())
            atom += 1
    forces /= 3 * atom
    stress = sum(
        float(weights[k]) * float(((pred.stress[k] - targets.stress[k]) ** 2).sum())
        for k in range(b)
    ) / (9 * b)
    virials = sum(
        float(weights[k]) * float((((pred.virials[k] - targets.virials[k]) / counts[k]) ** 2).sum())
        for k in range(b)
    ) / (9 * b)
    return lw.energy * energy + lw.forces * forces + lw.stress * stress + lw.virials * virials


@given(
    seed=st.integers(0, 10_000),
    counts=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    lw=st.tuples(*[st.floats(0.0, 100.0)] * 4),
)
def test_weighted_loss_matches_closed_form(seed, counts, lw):
    pred, targets, weights, num_atoms, batch = random_batch(seed, counts)
    weights_ = LossWeights(*lw)
    total, terms = weighted_loss(pred, targets, weights, num_atoms, batch, weights_)
    expected = closed_form(pred, targets, weights, counts, weights_)
    assert float(total) == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert set(terms) == {"energy", "forces", "stress", "virials"}


def test_missing_labels_drop_their_terms():
    pred, targets, weights, num_atoms, batch = random_batch(0, [2, 3])
    only_energy = Targets(energy=targets.energy)
    total, terms = weighted_loss(pred, only_energy, weights, num_atoms, batch, LossWeights())
    assert set(terms) == {"energy"}
    assert float(total) == pytest.approx(float(terms["energy"]))
    no_pred_forces = pred._replace(forces=None)
    _, terms = weighted_loss(no_pred_forces, targets, weights, num_atoms, batch, LossWeights())
    assert "forces" not in terms


def test_zero_weight_structure_does_not_count():
    pred, targets, weights, num_atoms, batch = random_batch(1, [2, 2])
    weights = torch.tensor([1.0, 0.0], dtype=torch.float64)
    moved = targets._replace(energy=targets.energy + torch.tensor([0.0, 1e3], dtype=torch.float64))
    a, _ = weighted_loss(pred, targets, weights, num_atoms, batch, LossWeights())
    b, _ = weighted_loss(pred, moved, weights, num_atoms, batch, LossWeights())
    assert float(a) == pytest.approx(float(b))


def test_sums_over_batches_give_the_data_set_mean():
    counts = [1, 4, 2, 3]
    pred, targets, weights, num_atoms, batch = random_batch(2, counts)
    lw = LossWeights(2.0, 3.0, 0.5, 0.25)
    whole, _ = weighted_loss(pred, targets, weights, num_atoms, batch, lw)
    sums: dict[str, TermSums] = {}
    for lo, hi in ((0, 1), (1, 4)):
        a0, a1 = sum(counts[:lo]), sum(counts[:hi])
        part_pred = Predictions(
            pred.energy[lo:hi], pred.node_energy[a0:a1], pred.forces[a0:a1],
            pred.stress[lo:hi], pred.virials[lo:hi],
        )  # fmt: skip
        part_targets = Targets(
            targets.energy[lo:hi], targets.forces[a0:a1], targets.stress[lo:hi],
            targets.virials[lo:hi],
        )  # fmt: skip
        part = loss_term_sums(
            part_pred, part_targets, weights[lo:hi], num_atoms[lo:hi], batch[a0:a1] - lo
        )
        for name, term in part.items():
            old = sums.get(name, TermSums(torch.zeros((), dtype=torch.float64), 0))
            sums[name] = TermSums(old.total + term.total, old.count + term.count)
    combined, _ = combine_terms(sums, lw)
    assert float(combined) == pytest.approx(float(whole), rel=1e-12)


def test_loss_is_differentiable():
    pred, targets, weights, num_atoms, batch = random_batch(3, [3])
    energy = pred.energy.clone().requires_grad_(True)
    total, _ = weighted_loss(
        pred._replace(energy=energy), targets, weights, num_atoms, batch, LossWeights()
    )
    total.backward()
    expected = 2 * weights * (energy.detach() - targets.energy) / 9.0  # d/dE of w ((E-Ê)/3)^2
    torch.testing.assert_close(energy.grad, expected)
