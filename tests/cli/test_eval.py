"""``tensorpot eval``: the printed table, the predictions file, overwriting, ``python -m``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

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


THREE_BPA = Path(__file__).parents[2] / "data" / "3bpa"


def test_eval_output_keeps_every_key_of_the_input(tmp_path, capsys, model_file, five_frames):
    """The input's keys stay as they were (names, units); tensorpot's are added beside them."""
    text = five_frames.read_text().replace(" energy=", " my_E=")
    text = re.sub(r"(pbc=\"F F F\")", r'\1 temperature=300 source="md run 7"', text)
    data = tmp_path / "keys.xyz"
    data.write_text(text)
    out = tmp_path / "pred.xyz"
    argv = ["eval", "--model", str(model_file), "--data", str(data), "--output", str(out)]
    assert main([*argv, "--energy-key", "my_E", "--energy-unit", "meV"]) == 0
    inputs, written = ase.io.read(data, ":"), ase.io.read(out, ":")
    assert len(written) == 5
    for before, after in zip(inputs, written):
        for key, value in before.info.items():
            assert after.info[key] == value, key  # my_E still in its own unit (meV)
        assert "energy" not in after.info and "tensorpot_energy" in after.info
        np.testing.assert_array_equal(after.get_forces(), before.get_forces())
        assert after.arrays["tensorpot_forces"].shape == (len(before), 3)


def test_eval_predicts_unlabelled_data(tmp_path, capsys, model_file, five_frames):
    frames = ase.io.read(five_frames, ":")
    bare = tmp_path / "bare.xyz"
    ase.io.write(bare, [type(a)(a.numbers, a.positions) for a in frames], format="extxyz")
    out = tmp_path / "pred.xyz"
    assert (
        main(["eval", "--model", str(model_file), "--data", str(bare), "--output", str(out)]) == 0
    )
    captured = capsys.readouterr()
    assert captured.out == "" and "no labels to score: 5 structures predicted" in captured.err
    labelled = evaluate(load_model(model_file), read_configurations(five_frames))[1]
    for atoms, pred in zip(ase.io.read(out, ":"), labelled):
        assert atoms.info["tensorpot_energy"] == pytest.approx(pred.energy, rel=1e-12)


def test_eval_scores_virials_and_refuses_them_as_stress(tmp_path, capsys):
    import tensorpot
    from tests.evaluation.tiny import tiny_model

    model_file = tensorpot.save_model(tiny_model(), tmp_path / "m.model")
    rng = np.random.default_rng(0)
    frames = []
    for k in range(3):
        cell = np.diag([4.0, 4.5, 5.0]) + rng.uniform(-0.2, 0.2, (3, 3))
        atoms = ase.Atoms("CHON", scaled_positions=rng.random((4, 3)) * 0.8, cell=cell, pbc=True)
        atoms.info["energy"] = -2000.0 - k
        atoms.info["virial"] = rng.normal(size=(3, 3)).round(3).tolist()
        atoms.arrays["forces"] = np.zeros((4, 3))
        frames.append(atoms)
    data = tmp_path / "cells.xyz"
    ase.io.write(data, frames, format="extxyz")
    base = ["eval", "--model", str(model_file), "--data", str(data)]
    assert main([*base, "--stress-key", "virial"]) == 2
    assert "--virials-key virial" in capsys.readouterr().err
    assert main([*base, "--virials-key", "virial"]) == 0
    values = table_values(capsys.readouterr().out)
    assert values["virials_rmse_per_atom"] > 0


def test_eval_on_a_machine_without_the_device(capsys, model_file, five_frames):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["eval", "--model", str(model_file), "--data", str(five_frames), "--device", "cuda"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "CUDA is not available" in lines[0]


def test_eval_of_isolated_atoms(tmp_path, capsys, model_file):
    """Frames with no neighbour within r_max (the bundled isolated atoms) are predicted."""
    data = THREE_BPA / "iso_atoms.xyz"
    out = tmp_path / "iso.xyz"
    assert (
        main(["eval", "--model", str(model_file), "--data", str(data), "--output", str(out)]) == 0
    )
    for atoms in ase.io.read(out, ":"):
        assert np.isfinite(atoms.info["tensorpot_energy"])
        assert np.all(atoms.arrays["tensorpot_forces"] == 0.0)


def test_eval_of_a_dipole_model_writes_and_scores_its_outputs(tmp_path, capsys):
    """A model with dipole and polarizability outputs: errors in the labels' units (named with
    --unit) and tensorpot_dipole / tensorpot_polarizability in the output file."""
    import tensorpot
    from tests.evaluation.tiny import tiny_model
    from tests.training.test_tensorial import point_charge_molecules

    model = tiny_model(max_L=2, outputs=["dipole", "polarizability"])
    path = tensorpot.save_model(model, tmp_path / "mu.model")
    frames = point_charge_molecules(4)
    for atoms in frames:
        atoms.info["polarizability"] = np.eye(3).reshape(-1) * 2.0
    data = tmp_path / "mu.xyz"
    ase.io.write(data, frames, format="extxyz")
    out = tmp_path / "pred.xyz"
    argv = ["eval", "--model", str(path), "--data", str(data), "--output", str(out)]
    png = tmp_path / "parity.png"
    assert main([*argv, "--unit", "dipole=D", "--parity", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "dipole_rmse (D)" in printed and "polarizability_rmse (Å³)" in printed
    assert "energy" not in printed
    for atoms in ase.io.read(out, ":"):
        assert atoms.info["tensorpot_dipole"].shape == (3,)
        assert atoms.info["tensorpot_polarizability"].shape == (3, 3)
