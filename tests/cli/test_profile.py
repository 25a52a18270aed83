"""``tensorpot eval --profile``: the printed profile, the files beside the plot, one-line errors."""

from __future__ import annotations

import pytest

from tensorpot.cli.main import main
from tensorpot.evaluation.profile import profile_paths
from tests.cli.conftest import stderr_lines
from tests.cli.test_eval import table_values


def test_profile_along_the_frame_order(tmp_path, capsys, model_file, five_frames):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "profile.png"
    argv = ["eval", "--model", str(model_file), "--data", str(five_frames)]
    assert main([*argv, "--profile", str(plot)]) == 0
    captured = capsys.readouterr()
    table_text, _, profile_text = captured.out.partition("energy profile along frame order")
    values = table_values(table_text)
    assert values["relative_energy_mae"] <= values["relative_energy_rmse"]
    rows = [line for line in profile_text.splitlines() if line.startswith("| ")][1:]
    assert [int(row.split("|")[1]) for row in rows] == [0, 1, 2, 3, 4]
    reference = [float(row.split("|")[3]) for row in rows]
    model = [float(row.split("|")[4]) for row in rows]
    assert min(reference) == 0.0 and min(model) == 0.0  # each relative to its own minimum
    assert f"RMSE {values['relative_energy_rmse']:.2f} meV" in profile_text
    for path in profile_paths(plot):
        assert path.is_file() and str(path) in captured.err
    assert main([*argv, "--profile", str(plot)]) == 2  # refuses to overwrite
    assert "exists" in stderr_lines(capsys)[0]


def test_profile_key_missing_from_a_frame(tmp_path, capsys, model_file, five_frames):
    pytest.importorskip("matplotlib")
    plot = tmp_path / "profile.png"
    argv = ["eval", "--model", str(model_file), "--data", str(five_frames)]
    assert main([*argv, "--profile", str(plot), "--profile-key", "dihedral"]) == 2
    (line,) = stderr_lines(capsys)
    assert str(five_frames) in line and "frame 0" in line and "'dihedral'" in line
    assert not any(path.exists() for path in profile_paths(plot))
    assert main([*argv, "--profile-key", "dihedral"]) == 2
    (line,) = stderr_lines(capsys)
    assert "--profile" in line
