"""``tensorpot export``: a model file in, a torch.export archive out, and one-line errors."""

from __future__ import annotations

import torch

import tensorpot
from tensorpot.cli.main import main
from tensorpot.models.export import EngineModel, example_inputs, read_record
from tensorpot.nn import cpu_kernel
from tests.cli.conftest import stderr_lines


def test_export_keeps_an_existing_file_and_writes_a_program_with_overwrite(
    tmp_path, capsys, model_file
):
    out = tmp_path / "tiny.pt2"
    out.write_text("keep")
    argv = ["export", "--model", str(model_file), "--out", str(out)]
    assert main(argv) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(out) in lines[0] and "exists" in lines[0]
    assert out.read_text() == "keep"
    assert main([*argv, "--overwrite"]) == 0
    lines = stderr_lines(capsys)
    assert lines[0] == f"tensorpot: wrote the exported model to {out}"
    library = out.with_suffix(".so")  # the tiny ICTP runs the kernel where it builds
    assert library.is_file() == cpu_kernel.available()
    assert read_record(out)["operator_library"] == (library.name if library.is_file() else None)
    if library.is_file():
        assert len(lines) == 2 and str(library) in lines[1] and "load_library" in lines[1]
    else:
        assert len(lines) == 1
    _check_program(out, model_file)


def test_pytorch_ops_export_needs_no_library(tmp_path, capsys, model_file):
    out = tmp_path / "portable.pt2"
    assert main(["export", "--model", str(model_file), "--out", str(out), "--pytorch-ops"]) == 0
    assert stderr_lines(capsys) == [f"tensorpot: wrote the exported model to {out}"]
    assert not out.with_suffix(".so").exists()
    assert read_record(out)["operator_library"] is None
    _check_program(out, model_file)


def _check_program(out, model_file):
    model = tensorpot.load_model(model_file)
    inputs = example_inputs(model, periodic=True, num_atoms=6)
    got = torch.export.load(out).module()(*inputs)
    want = EngineModel(model)(*inputs)
    torch.testing.assert_close(got["energy"], want["energy"], rtol=1e-10, atol=0.0)
    torch.testing.assert_close(got["forces"], want["forces"], rtol=1e-10, atol=1e-10)


def test_a_missing_model_is_one_line_and_writes_nothing(tmp_path, capsys):
    missing, out = tmp_path / "none.model", tmp_path / "out.pt2"
    assert main(["export", "--model", str(missing), "--out", str(out)]) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(missing) in lines[0] and "no such model file" in lines[0]
    assert not out.exists()


def test_a_file_that_is_not_a_model_is_one_line(tmp_path, capsys):
    bad, out = tmp_path / "notes.model", tmp_path / "out.pt2"
    bad.write_text("not a model")
    assert main(["export", "--model", str(bad), "--out", str(out)]) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(bad) in lines[0]
    assert not out.exists()
