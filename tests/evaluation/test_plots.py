"""Parity plots and learning curves: PNG files, log parsing, and the missing-matplotlib error."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tensorpot.data.readers import read_configurations
from tensorpot.errors import DataError, TensorPotError
from tensorpot.evaluation import plots
from tensorpot.evaluation.evaluate import OutputExistsError, predict
from tests.evaluation.tiny import TEST_300K, tiny_model

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOG = """epoch,lr,train_loss,valid_loss,valid_energy_rmse,valid_forces_rmse,time,note
0,0.01,2.5,3.0,120.0,300.0,1.2,warmup
1,0.01,1.5,,,,2.3,
2,0.005,0.9,1.1,80.0,210.0,3.4,best
"""


def is_png(path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_parity_plot_of_predictions(tmp_path):
    pytest.importorskip("matplotlib")
    configs = read_configurations(TEST_300K, index=":3")
    preds = predict(tiny_model(), configs)
    out = plots.plot_parity_predictions(tmp_path / "parity.png", configs, preds)
    assert is_png(out)
    with pytest.raises(OutputExistsError):
        plots.plot_parity_predictions(out, configs, preds)
    plots.plot_parity_predictions(out, configs, preds, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parity.png"]


def test_parity_plot_without_forces(tmp_path):
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    e = rng.normal(size=10)
    assert is_png(plots.plot_parity(tmp_path / "e.png", e, e + 0.01, title="energies"))


def test_read_log_keeps_numeric_columns(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text(LOG)
    columns = plots.read_log(log)
    assert set(columns) == {
        "epoch", "lr", "train_loss", "valid_loss", "valid_energy_rmse", "valid_forces_rmse",
        "time",
    }  # fmt: skip
    np.testing.assert_array_equal(columns["epoch"], [0, 1, 2])
    assert np.isnan(columns["valid_loss"][1]) and columns["valid_loss"][2] == 1.1


def test_learning_curves(tmp_path):
    pytest.importorskip("matplotlib")
    log = tmp_path / "log.csv"
    log.write_text(LOG)
    assert is_png(plots.plot_learning_curves(log, tmp_path / "curves.png"))
    with pytest.raises(OutputExistsError):
        plots.plot_learning_curves(log, tmp_path / "curves.png")


def test_learning_curves_leave_out_columns_without_a_value():
    columns = {
        "epoch": np.array([1.0, 2.0]),
        "lr": np.array([0.01, 0.01]),
        "valid_loss": np.array([1.0, 0.5]),
        "valid_forces_rmse": np.array([30.0, 20.0]),
        "valid_dipole_rmse": np.array([np.nan, np.nan]),  # no dipole labels in this run
        "time_s": np.array([3.0, 3.0]),
    }
    panels = {label: set(cols) for cols, label in plots._learning_curve_panels(columns)}
    assert panels == {
        "loss": {"valid_loss"}, "metric": {"valid_forces_rmse"}, "learning rate": {"lr"},
    }  # fmt: skip
    del columns["valid_forces_rmse"]
    assert "metric" not in {label for _, label in plots._learning_curve_panels(columns)}


def test_learning_curves_without_epoch_column(tmp_path):
    pytest.importorskip("matplotlib")
    log = tmp_path / "log.csv"
    log.write_text("train_loss,valid_loss\n1.0,2.0\n0.5,-1.0\n")  # not all positive: linear
    assert is_png(plots.plot_learning_curves(log, tmp_path / "c.png"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "no header"),
        ("epoch,train_loss\n", "no rows"),
        ("name,kind\na,b\n", "no numeric column"),
    ],
)
def test_bad_logs_name_the_file(tmp_path, text, message):
    log = tmp_path / "bad.csv"
    log.write_text(text)
    with pytest.raises(DataError, match=message) as info:
        plots.plot_learning_curves(log, tmp_path / "c.png")
    assert str(log) in str(info.value)
    assert not (tmp_path / "c.png").exists()


def test_missing_log(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        plots.read_log(tmp_path / "nope.csv")


def test_without_matplotlib_the_error_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(TensorPotError, match="needs matplotlib") as info:
        plots.plot_parity(tmp_path / "p.png", np.zeros(2), np.zeros(2))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "p.png").exists()
