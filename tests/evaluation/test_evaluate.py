"""predict / evaluate / write_predictions: agreement with the model, closed-form errors, files."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms

from tensorpot.calculators import TensorPotCalculator
from tensorpot.data.atoms import atoms_to_graph, collate
from tensorpot.data.configuration import Configuration
from tensorpot.data.readers import read_configurations
from tensorpot.errors import DataError
from tensorpot.evaluation.evaluate import (
    OutputExistsError,
    evaluate,
    predict,
    write_predictions,
)
from tests.evaluation.tiny import TEST_300K, frames_text, tiny_model, write_frames


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def configs():
    return read_configurations(TEST_300K, index=":5")


def direct(model, config: Configuration) -> tuple[float, np.ndarray]:
    """Energy and forces of one structure straight from the model's forward pass."""
    atoms = Atoms(numbers=config.numbers, positions=config.positions)
    batch = collate([atoms_to_graph(atoms, model.r_max)], dtype=model.dtype)
    out = model(batch, compute_forces=True)
    return float(out.energy.detach()[0]), out.forces.detach().numpy()


def crystal(seed: int, stress: bool = False) -> Configuration:
    """A small periodic C/H/O cell, optionally with a made-up stress label."""
    rng = np.random.default_rng(seed)
    cell = np.diag([3.6, 3.9, 4.1]) + rng.uniform(-0.3, 0.3, size=(3, 3))
    frac = np.array([[0.0, 0.0, 0.0], [0.5, 0.45, 0.55], [0.2, 0.7, 0.3]])
    label = rng.normal(scale=0.01, size=(3, 3)) if stress else None
    return Configuration(
        numbers=np.array([6, 1, 8]),
        positions=frac @ cell,
        cell=cell,
        pbc=np.ones(3, dtype=bool),
        energy=-3000.0,
        forces=rng.normal(size=(3, 3)),
        stress=None if label is None else 0.5 * (label + label.T),
    )


def test_predict_matches_the_model_and_batching(model, configs):
    by_two = predict(model, configs, batch_size=2)
    by_all = predict(model, configs, batch_size=len(configs))
    assert len(by_two) == len(configs)
    for config, a, b in zip(configs, by_two, by_all):
        energy, forces = direct(model, config)
        assert a.energy == pytest.approx(energy, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(a.forces, forces, atol=1e-10)
        assert a.energy == pytest.approx(b.energy, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-10)
        assert a.forces.shape == (config.n_atoms, 3)
        assert a.stress is None  # molecules: no cell, no stress


def test_predict_keeps_the_training_flag(configs):
    model = tiny_model()
    model.train()
    predict(model, configs[:1])
    assert model.training
    model.eval()
    predict(model, configs[:1])
    assert not model.training


def test_float32_model_predicts_float64_arrays(configs):
    model = tiny_model(dtype="float32")
    preds = predict(model, configs[:2])
    assert preds[0].forces.dtype == np.float64
    energy, _ = direct(model, configs[0])
    assert preds[0].energy == pytest.approx(energy, rel=1e-6)


def test_stress_only_for_periodic_cells(model, configs):
    mixed = [configs[0], crystal(0), configs[1], crystal(1)]
    preds = predict(model, mixed, batch_size=4)
    assert preds[0].stress is None and preds[2].stress is None
    for k in (1, 3):
        atoms = Atoms(numbers=mixed[k].numbers, positions=mixed[k].positions,
                      cell=mixed[k].cell, pbc=True)  # fmt: skip
        atoms.calc = TensorPotCalculator(model=model)
        np.testing.assert_allclose(preds[k].stress, atoms.get_stress(voigt=False), atol=1e-10)
    assert all(p.stress is None for p in predict(model, mixed, compute_stress=False))
    with pytest.raises(DataError, match="no periodic cell"):
        predict(model, mixed, compute_stress=True)


def test_unknown_element_names_file_and_frame(tmp_path, model):
    frames = frames_text(3)
    frames[1][2] = "Cl" + frames[1][2][1:]
    configs = read_configurations(write_frames(tmp_path / "cl.xyz", frames))
    with pytest.raises(DataError, match=r"cl\.xyz, frame 1: .*Cl"):
        predict(model, configs)


def test_error_table_is_the_closed_form_of_the_written_predictions(tmp_path, model, configs):
    table, preds = evaluate(model, configs, batch_size=2)
    path = write_predictions(tmp_path / "pred.extxyz", configs, preds)
    frames = ase.io.read(path, index=":")
    ref_e = np.array([a.get_potential_energy() for a in frames])
    pred_e = np.array([a.info["tensorpot_energy"] for a in frames])
    n = np.array([len(a) for a in frames])
    ref_f = np.concatenate([a.get_forces() for a in frames])
    pred_f = np.concatenate([a.arrays["tensorpot_forces"] for a in frames])

    def mae(d):
        return 1e3 * np.mean(np.abs(d))

    def rmse(d):
        return 1e3 * np.sqrt(np.mean(d**2))

    expected = {
        "energy_mae": mae(pred_e - ref_e),
        "energy_rmse": rmse(pred_e - ref_e),
        "energy_mae_per_atom": mae((pred_e - ref_e) / n),
        "energy_rmse_per_atom": rmse((pred_e - ref_e) / n),
        "forces_mae": mae(pred_f - ref_f),
        "forces_rmse": rmse(pred_f - ref_f),
    }
    assert set(table) == set(expected)
    for name, value in expected.items():
        assert table[name] == pytest.approx(value, rel=1e-6), name
    assert table["energy_rmse"] >= table["energy_mae"] > 0


def test_stress_errors_when_labelled(model):
    configs = [crystal(k, stress=True) for k in range(3)]
    table, preds = evaluate(model, configs, batch_size=3)
    diff = np.stack([p.stress - c.stress for c, p in zip(configs, preds)])
    assert table["stress_mae"] == pytest.approx(1e3 * np.abs(diff).mean(), rel=1e-9)
    assert table["stress_rmse"] == pytest.approx(1e3 * np.sqrt((diff**2).mean()), rel=1e-9)


def test_written_file_reads_back(tmp_path, model, configs):
    preds = predict(model, configs)
    path = write_predictions(tmp_path / "out" / "pred.extxyz", configs, preds)
    frames = ase.io.read(path, index=":")
    assert len(frames) == len(configs)
    original = ase.io.read(TEST_300K, index=":5")
    for atoms, ref, config in zip(frames, original, configs):
        energy, forces = direct(model, config)
        assert atoms.info["tensorpot_energy"] == pytest.approx(energy, rel=1e-12)
        np.testing.assert_allclose(atoms.arrays["tensorpot_forces"], forces, atol=1e-7)
        assert atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy(), 1e-12)
        np.testing.assert_allclose(atoms.get_forces(), ref.get_forces(), atol=1e-7)
        np.testing.assert_allclose(atoms.positions, ref.positions, atol=1e-7)
        assert list(atoms.symbols) == list(ref.symbols)
        assert "tensorpot_stress" not in atoms.info


def test_written_stress_reads_back(tmp_path, model, configs):
    mixed = [crystal(0, stress=True), configs[0]]
    preds = predict(model, mixed)
    frames = ase.io.read(write_predictions(tmp_path / "p.extxyz", mixed, preds), index=":")
    np.testing.assert_allclose(frames[0].info["tensorpot_stress"], preds[0].stress, atol=1e-12)
    np.testing.assert_allclose(frames[0].cell.array, mixed[0].cell, atol=1e-7)
    assert "tensorpot_stress" not in frames[1].info


def test_refuses_to_overwrite(tmp_path, model, configs):
    preds = predict(model, configs[:2])
    path = tmp_path / "pred.extxyz"
    path.write_text("keep me")
    with pytest.raises(OutputExistsError, match="exists"):
        write_predictions(path, configs[:2], preds)
    assert path.read_text() == "keep me"
    with pytest.raises(FileExistsError):
        write_predictions(path, configs[:2], preds)
    write_predictions(path, configs[:2], preds, overwrite=True)
    assert len(ase.io.read(path, index=":")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.extxyz"]  # no temp file left


def test_lengths_must_agree(tmp_path, model, configs):
    preds = predict(model, configs[:2])
    with pytest.raises(ValueError, match="2 predictions"):
        write_predictions(tmp_path / "p.extxyz", configs[:3], preds)
    assert not (tmp_path / "p.extxyz").exists()
