"""Training on dipoles, polarizabilities and properties: masks, label checks, convergence."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.io import write

import tensorpot
from tensorpot.data.batch import Targets, TensorDict
from tensorpot.errors import DataError
from tensorpot.models.base import Predictions
from tensorpot.training import train
from tensorpot.training.loss import LossWeights, loss_term_sums, weighted_loss


def point_charge_molecules(count: int, seed: int = 0) -> list[Atoms]:
    """Random 5-atom molecules labelled with the dipole of fixed charges per element (H +0.3,
    C -0.2, O -0.4 e, shifted to neutral), so the label is a function the model can learn."""
    rng = np.random.default_rng(seed)
    charge = {1: 0.3, 6: -0.2, 8: -0.4}
    frames = []
    for _ in range(count):
        numbers = rng.choice([1, 1, 6, 8], size=5)
        positions = [np.zeros(3)]
        while len(positions) < 5:
            p = positions[rng.integers(len(positions))] + rng.normal(size=3) * 0.9
            if np.linalg.norm(np.asarray(positions) - p, axis=1).min() > 0.9:
                positions.append(p)
        positions = np.asarray(positions)
        q = np.array([charge[int(z)] for z in numbers])
        q -= q.mean()
        atoms = Atoms(numbers=numbers, positions=positions)
        atoms.info["dipole"] = q @ (positions - positions.mean(0))
        frames.append(atoms)
    return frames


def test_dipoles_alone_converge(tmp_path):
    frames = point_charge_molecules(60)
    write(tmp_path / "train.xyz", frames, format="extxyz")
    config = {
        "train_file": str(tmp_path / "train.xyz"), "valid_fraction": 0.2, "batch_size": 8,
        "max_num_epochs": 40, "lr": 0.01, "output_dir": str(tmp_path / "run"), "name": "mu",
        "progress_bar": False, "log_to_stdout": False, "seed": 1,
        "model": {"num_channels": 8, "max_L": 1, "max_ell": 1, "correlation": 1,
                  "num_interactions": 1, "radial_MLP": [16], "r_max": 3.0, "head_hidden": 8,
                  "atomic_numbers": [1, 6, 8], "outputs": ["dipole"]},
    }  # fmt: skip
    result = train(config)
    spread = np.sqrt(np.mean([np.sum(a.info["dipole"] ** 2) / 3 for a in frames]))
    valid = result.error_tables["valid"]["dipole_rmse"]
    assert valid < 0.2 * spread, (valid, spread)


def test_an_output_without_labels_is_refused(tmp_path):
    frames = point_charge_molecules(10)
    write(tmp_path / "train.xyz", frames, format="extxyz")
    config = {
        "train_file": str(tmp_path / "train.xyz"), "output_dir": str(tmp_path / "run"),
        "valid_fraction": 0.2, "progress_bar": False, "log_to_stdout": False,
        "model": {"num_channels": 4, "max_L": 2, "correlation": 1, "num_interactions": 1,
                  "radial_MLP": [8], "atomic_numbers": [1, 6, 8],
                  "outputs": ["dipole", "polarizability"]},
    }  # fmt: skip
    with pytest.raises(DataError, match=r"train\.xyz, frame \d+: .*'polarizability' output"):
        train(config)


def _masked_batch():
    """Three structures of 2, 3, 1 atoms; the second has no dipole, the third no energy."""
    num_atoms = torch.tensor([2, 3, 1])
    batch = torch.repeat_interleave(torch.arange(3), num_atoms)
    masks = TensorDict(
        energy=torch.tensor([True, True, False]), dipole=torch.tensor([True, False, True])
    )
    targets = Targets(
        energy=torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64),
        dipole=torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 2.0, 0]], dtype=torch.float64),
        masks=masks,
    )
    pred = Predictions(
        energy=torch.tensor([1.5, 2.0, 99.0], dtype=torch.float64), node_energy=None,
        dipole=torch.tensor([[1.0, 0, 0], [5.0, 5.0, 5.0], [0, 1.0, 0]], dtype=torch.float64),
    )  # fmt: skip
    return pred, targets, num_atoms, batch


def test_masked_frames_do_not_count():
    pred, targets, num_atoms, batch = _masked_batch()
    weights = torch.ones(3, dtype=torch.float64)
    sums = loss_term_sums(pred, targets, weights, num_atoms, batch)
    # energy: ((0.5 / 2)^2 + 0) over the two labelled structures
    assert sums["energy"].count == 2 and float(sums["energy"].total) == pytest.approx(0.0625)
    # dipole per atom: structure 0 exact, structure 2 off by 1 in y over 1 atom; 6 components
    assert sums["dipole"].count == 6 and float(sums["dipole"].total) == pytest.approx(1.0)
    total, terms = weighted_loss(
        pred, targets, weights, num_atoms, batch, LossWeights(energy=2.0, dipole=3.0)
    )
    assert float(total) == pytest.approx(2.0 * 0.0625 / 2 + 3.0 * 1.0 / 6)


QM9 = Path(__file__).parents[3] / "shared" / "data" / "qm9_sample" / "test_qm9.db"


@pytest.mark.skipif(not QM9.exists(), reason="the shared QM9 sample is not here")
def test_qm9_properties_from_the_ase_database(tmp_path):
    """Named properties (an extensive U0 and an intensive gap) trained from the QM9 sample."""
    config = {
        "train_file": str(QM9), "valid_fraction": 0.25, "batch_size": 5, "max_num_epochs": 3,
        "output_dir": str(tmp_path / "run"), "progress_bar": False, "log_to_stdout": False,
        "units": {"energy_U0": "Hartree", "gap": "Hartree"},
        "model": {"num_channels": 4, "max_L": 0, "correlation": 1, "num_interactions": 1,
                  "radial_MLP": [8], "atomic_numbers": [1, 6, 7, 8, 9],
                  "outputs": [{"property": "energy_U0", "reduction": "sum"},
                              {"property": "gap", "reduction": "mean"}]},
    }  # fmt: skip
    result = train(config)
    table = result.error_tables["valid"]
    assert {"energy_U0_mae", "energy_U0_mae_per_atom", "gap_mae"} <= set(table)
    assert "gap_mae_per_atom" not in table
    text = result.errors_path.read_text(encoding="utf-8")
    assert "energy_U0_mae (Hartree)" in text
    model = tensorpot.load_model(result.model_path)
    u0 = model.config.properties[0]
    assert u0.shift < -5.0  # the labels' mean per atom (U0 is tens of Hartree below zero per atom)
