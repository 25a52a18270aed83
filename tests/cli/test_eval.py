"""``tensorpot eval``: the printed table, the predictions file, overwriting, ``python -m``."""

from __future__ import annotations

import re
import subprocess
import sys

import ase.io
import numpy as np
import pytest

from tensorpot.cli.main import main
from tensorpot.data.readers import read_configurations
from tensorpot.evaluation import evaluate as evaluate_module
from tensorpot.evaluation.evaluate import evaluate
from tensorpot.models.io import load_model

METRICS = (
    "energy_mae", "energy_rmse", "energy_mae_per_atom", "energy_rmse_per_atom",
    "forces_mae", "forces_rmse",
)  # fmt: skip


def table_values(text: str) -> dict[str, float]:
    """``{metric: value}`` from the one data row of a printed Markdown error table."""
    rows = [line for line in text.splitlines() if line.startswith("|")]
    header = [re.sub(r" \(.*\)$", "", c.strip()) for c in rows[0].strip("|").split("|")]
    values = [c.strip() for c in rows[2].strip("|").split("|")]
    return {h: float(v) for h, v in zip(header[1:], values[1:])}


def test_eval_prints_the_table_and_writes_predictions(tmp_path, capsys, model_file, five_frames):
    out = tmp_path / "pred.extxyz"
    argv = ["eval", "--model", str(model_file), "--data", str(five_frames), "--output", str(out)]
    assert main(argv + ["--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    for name in METRICS:
        assert name in printed
    assert "five.xyz" in printed and "stress" not in printed
    model = load_model(model_file)
    configs = read_configurations(five_frames)
    table, preds = evaluate(model, configs)
    values = table_values(printed)
    assert set(values) == set(METRICS)
    for name in METRICS:
        assert values[name] == pytest.approx(table[name], abs=0.006)
    frames = ase.io.read(out, index=":")
    assert len(frames) == 5
    for atoms, pred, config in zip(frames, preds, configs):
        assert atoms.info["tensorpot_energy"] == pytest.approx(pred.energy, rel=1e-12)
        np.testing.assert_allclose(atoms.arrays["tensorpot_forces"], pred.forces, atol=1e-7)
        assert atoms.get_potential_energy() == pytest.approx(config.energy, rel=1e-12)


def test_eval_refuses_to_overwrite(tmp_path, capsys, model_file, five_frames):
    out = tmp_path / "pred.extxyz"
    out.write_text("keep")
    argv = ["eval", "--model", str(model_file), "--data", str(five_frames), "--output", str(out)]
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "exists" in lines[0]
    assert captured.out == ""  # refused before any work
    assert out.read_text() == "keep"
    assert main(argv + ["--overwrite"]) == 0
    assert len(ase.io.read(out, index=":")) == 5


def test_eval_parity_plot(tmp_path, model_file, five_frames):
    pytest.importorskip("matplotlib")
    png = tmp_path / "parity.png"
    argv = ["eval", "--model", str(model_file), "--data", str(five_frames), "--parity", str(png)]
    assert main(argv) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_reader_options(tmp_path, capsys, model_file, five_frames):
    """--energy-unit scales energies and forces; a renamed key is found with --energy-key."""
    text = five_frames.read_text().replace(" energy=", " my_E=")
    data = tmp_path / "renamed.xyz"
    data.write_text(text)
    base = ["eval", "--model", str(model_file), "--data", str(data), "--energy-key", "my_E"]
    assert main(base) == 0
    in_ev = table_values(capsys.readouterr().out)
    assert main(base + ["--energy-unit", "meV"]) == 0
    in_mev = table_values(capsys.readouterr().out)
    assert in_mev["forces_mae"] != pytest.approx(in_ev["forces_mae"], rel=1e-3)


def test_keyboard_interrupt_exits_130(monkeypatch, capsys, model_file, five_frames):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate_module, "evaluate_file", interrupted)
    assert main(["eval", "--model", str(model_file), "--data", str(five_frames)]) == 130
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["eval", "--data", "x.xyz"],
        ["eval", "--model", "m", "--data", "d", "--bogus"],
        ["eval", "--model", "m", "--data", "d", "--batch-size", "0"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "eval" in capsys.readouterr().out


def test_python_dash_m(tmp_path, model_file):
    """``python -m tensorpot`` is the same entry point: exit code 2 and one line for bad input."""
    data = tmp_path / "no.xyz"
    argv = [sys.executable, "-m", "tensorpot", "eval", "--model", str(model_file), "--data"]
    done = subprocess.run(argv + [str(data)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"tensorpot: error: {data}: file not found"]
