"""The error table of tensorial outputs and partly labelled batches."""

from __future__ import annotations

import math

import pytest
import torch

from tensorpot.evaluation.metrics import ErrorAccumulator, format_error_table, metric_unit
from tests.training.test_tensorial import _masked_batch


def test_only_labelled_structures_count():
    pred, targets, num_atoms, _ = _masked_batch()
    acc = ErrorAccumulator()
    acc.update(pred, targets, num_atoms)
    table = acc.table()
    assert table["energy_mae"] == pytest.approx(1e3 * 0.5 / 2)  # meV, the third is unlabelled
    # dipole components of structures 0 and 2: errors 0,0,0 and 0,-1,0
    assert table["dipole_mae"] == pytest.approx(1 / 6)
    assert table["dipole_rmse"] == pytest.approx(math.sqrt(1 / 6))
    assert table["dipole_norm_mae"] == pytest.approx(0.5)  # |mu| 1 vs 1, 1 vs 2
    assert table["dipole_mae_per_atom"] == pytest.approx(1 / 6)  # the error is in a 1-atom one


def test_property_per_atom_only_when_extensive():
    from tensorpot.data.batch import Targets, TensorDict
    from tensorpot.models.base import Predictions

    num_atoms = torch.tensor([2, 4])
    targets = Targets(
        properties=TensorDict(U0=torch.tensor([1.0, 2.0]), gap=torch.tensor([3.0, 3.0]))
    )
    pred = Predictions(None, None, properties={"U0": torch.tensor([2.0, 2.0]),
                                               "gap": torch.tensor([3.5, 2.5])})  # fmt: skip
    acc = ErrorAccumulator(extensive=frozenset({"U0"}))
    acc.update(pred, targets, num_atoms)
    table = acc.table()
    assert table["U0_mae"] == pytest.approx(0.5) and table["U0_mae_per_atom"] == pytest.approx(0.25)
    assert table["gap_mae"] == pytest.approx(0.5) and "gap_mae_per_atom" not in table


def test_units_are_named():
    assert metric_unit("forces_rmse") == "meV/Å"
    assert metric_unit("dipole_norm_rmse") == "e·Å"
    assert metric_unit("polarizability_rmse_per_atom") == "Å³/atom"
    assert metric_unit("gap_mae", {"gap": "eV"}) == "eV"
    text = format_error_table({"test": {"energy_mae": 1.234, "dipole_rmse": 0.012345}},
                              {"dipole": "D"})  # fmt: skip
    assert "dipole_rmse (D)" in text and "0.01235" in text and "1.23" in text
