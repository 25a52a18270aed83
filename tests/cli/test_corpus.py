"""The corpus of bad inputs (tests/corpus) through the command line and the ASE calculator."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from tensorpot.calculators import TensorPotCalculator
from tensorpot.cli.main import main
from tensorpot.errors import DataError
from tests.cli.conftest import stderr_lines

CORPUS = Path(__file__).parents[1] / "corpus"
CASES = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_eval_refuses_in_one_line_and_writes_nothing(name, tmp_path, capsys, model_file):
    case, data = CASES[name], CORPUS / name
    out = tmp_path / "pred.xyz"
    assert (
        main(["eval", "--model", str(model_file), "--data", str(data), "--output", str(out)]) == 2
    )
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith("tensorpot: error: "), lines
    assert str(data) in lines[0]
    if case["frame"] is not None:
        assert f"frame {case['frame']}" in lines[0], lines[0]
    assert case["message"].lower() in lines[0].lower(), lines[0]
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file left


def test_the_intact_file_is_accepted(tmp_path, capsys, model_file):
    out = tmp_path / "pred.xyz"
    argv = ["eval", "--model", str(model_file), "--data", str(CORPUS / "good.xyz")]
    assert main([*argv, "--output", str(out)]) == 0
    assert len(ase.io.read(out, ":")) == 3


def _readable(name: str) -> list:
    try:
        return ase.io.read(CORPUS / name, ":", format="extxyz")
    except Exception:
        return []


@pytest.mark.parametrize("name", sorted(n for n in CASES if _readable(n)))
def test_calculator_refuses_what_the_command_line_refuses(name, model_file):
    case, frames = CASES[name], _readable(name)
    calc = TensorPotCalculator(model_path=str(model_file))
    for k, atoms in enumerate(frames):
        atoms.calc = calc
        if case["structure"] and k == case["frame"]:
            with pytest.raises(DataError, match=f"(?i){case['message']}"):
                atoms.get_potential_energy()
        else:  # a broken label or another frame: the structure itself is fine
            assert np.isfinite(atoms.get_potential_energy())
            assert np.isfinite(atoms.get_forces()).all()


def test_every_broken_structure_reaches_the_calculator():
    """The calculator half covers every case whose structure is broken (ASE reads them)."""
    for name, case in CASES.items():
        if case["structure"]:
            assert _readable(name), name
