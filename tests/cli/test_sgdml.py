"""sGDML/MD22 npz files reach ``tensorpot eval`` and training through the same dispatch."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

from tensorpot.cli.main import main
from tensorpot.config import parse_run_config
from tensorpot.data.readers import read_configurations
from tensorpot.training.run_data import read_data_file
from tests.cli.test_eval import table_values
from tests.evaluation.tiny import TINY

KCAL = units.kcal / units.mol


def as_sgdml(path, configs, **extra) -> None:
    """Write ``configs`` (one molecule) as an sGDML file in kcal/mol, as MD22 stores it."""
    np.savez(
        path,
        R=np.stack([c.positions for c in configs]),
        E=np.array([[c.energy / KCAL] for c in configs]),
        F=np.stack([c.forces / KCAL for c in configs]),
        z=configs[0].numbers,
        **extra,
    )


def test_eval_of_an_sgdml_file_matches_its_extxyz(tmp_path, capsys, model_file, five_frames):
    configs = read_configurations(five_frames)
    md22 = tmp_path / "md22.npz"
    as_sgdml(md22, configs)
    stated = tmp_path / "sgdml.npz"
    as_sgdml(stated, configs, e_unit=np.array("kcal/mol"), r_unit=np.array("Ang"))
    tables = []
    for data in (five_frames, md22, stated):
        assert main(["eval", "--model", str(model_file), "--data", str(data)]) == 0
        tables.append(table_values(capsys.readouterr().out))
    assert tables[0]  # the frames are labelled
    for table in tables[1:]:
        assert table.keys() == tables[0].keys()
        for name, value in table.items():
            assert value == pytest.approx(tables[0][name], abs=0.011)  # printed to 2 decimals


def test_eval_of_an_sgdml_file_with_a_contradicting_unit(tmp_path, capsys, model_file):
    path = tmp_path / "ev.npz"
    rng = np.random.default_rng(0)
    np.savez(path, R=rng.normal(size=(2, 3, 3)) * 2, E=np.zeros(2), F=np.zeros((2, 3, 3)),
             z=np.array([6, 1, 1]), e_unit=np.array("eV"))  # fmt: skip
    argv = ["eval", "--model", str(model_file), "--data", str(path), "--energy-unit", "kcal/mol"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and path.name in err[0] and "states e_unit 'eV'" in err[0]


def test_training_reads_an_sgdml_file_in_its_own_units(tmp_path, five_frames):
    configs = read_configurations(five_frames)
    path = tmp_path / "md22.npz"
    as_sgdml(path, configs)
    model = {k: v for k, v in TINY.items() if k != "model"}
    config = parse_run_config({"train_file": str(path), "model": model})
    read = read_data_file(str(path), config)
    assert len(read) == len(configs)
    for mine, theirs in zip(read, configs):
        assert mine.energy == pytest.approx(theirs.energy, rel=1e-14)
        np.testing.assert_allclose(mine.forces, theirs.forces, rtol=1e-12, atol=1e-14)
        np.testing.assert_array_equal(mine.positions, theirs.positions)
