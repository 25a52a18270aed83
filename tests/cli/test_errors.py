"""Bad input through ``main(["eval", ...])``: exit 2, one stderr line naming file and frame.

With ``--debug`` the exception propagates instead. A model file that is a pickle with code is
refused without running that code.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import tensorpot
from tensorpot.cli.main import main
from tensorpot.errors import DataError, TensorPotError
from tests.cli.conftest import stderr_lines
from tests.evaluation.tiny import frames_text, write_frames

POSITION = re.compile(r"^(\S+\s+)(\S+\s+\S+\s+\S+)(.*)$", re.S)


def malformed_line(frames):
    frames[2][5] = "C 1.0 2.0\n"  # too few columns
    return 2


def missing_energy(frames):
    frames[3][1] = re.sub(r" energy=\S+", "", frames[3][1])
    return 3


def unknown_element(frames):
    frames[1][2] = "Cl" + frames[1][2][1:]
    return 1


def nan_force(frames):
    frames[4][7] = frames[4][7].rstrip().rsplit(maxsplit=1)[0] + " nan\n"
    return 4


def nan_energy(frames):
    frames[0][1] = re.sub(r" energy=\S+", " energy=nan", frames[0][1])
    return 0


def same_position(frames):
    first = POSITION.match(frames[2][2]).group(2)
    match = POSITION.match(frames[2][3])
    frames[2][3] = match.group(1) + first + match.group(3)
    return 2


def wrong_atom_count(frames):
    frames[1][0] = "30\n"  # three atom lines short
    return 1


BAD_DATA = [
    malformed_line, missing_energy, unknown_element, nan_force, nan_energy, same_position,
    wrong_atom_count,
]  # fmt: skip


def check_one_line(capsys, *names: str) -> str:
    lines = stderr_lines(capsys)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("tensorpot: error: ")
    assert "Traceback" not in line and "\x1b" not in line
    for name in names:
        assert name in line, (name, line)
    return line


@pytest.mark.parametrize("corrupt", BAD_DATA, ids=lambda f: f.__name__)
def test_bad_data_is_one_line_naming_file_and_frame(tmp_path, capsys, model_file, corrupt):
    frames = frames_text(5)
    frame = corrupt(frames)
    data = write_frames(tmp_path / f"{corrupt.__name__}.xyz", frames)
    argv = ["eval", "--model", str(model_file), "--data", str(data)]
    assert main(argv) == 2
    check_one_line(capsys, str(data), f"frame {frame}")
    with pytest.raises(DataError) as info:
        main(argv + ["--debug"])
    assert info.value.file == str(data) and info.value.frame == frame


def test_empty_file(tmp_path, capsys, model_file):
    data = tmp_path / "empty.xyz"
    data.write_text("")
    argv = ["eval", "--model", str(model_file), "--data", str(data)]
    assert main(argv) == 2
    check_one_line(capsys, str(data), "no frames")
    with pytest.raises(DataError):
        main(argv + ["--debug"])


def test_missing_data_file(tmp_path, capsys, model_file):
    data = tmp_path / "nowhere.xyz"
    assert main(["eval", "--model", str(model_file), "--data", str(data)]) == 2
    check_one_line(capsys, str(data), "not found")


def test_missing_model_file(tmp_path, capsys, five_frames):
    model = tmp_path / "nowhere.model"
    argv = ["eval", "--model", str(model), "--data", str(five_frames)]
    assert main(argv) == 2
    check_one_line(capsys, str(model))
    with pytest.raises(TensorPotError):
        main(argv + ["--debug"])


class Payload:
    """Unpickling this would run ``open(marker, "w")``, creating the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused_and_not_run(tmp_path, capsys, five_frames):
    marker = tmp_path / "pwned"
    model = tmp_path / "evil.model"
    torch.save({"format": "tensorpot-model", "format_version": 1, "x": Payload(marker)}, model)
    assert not marker.exists()
    argv = ["eval", "--model", str(model), "--data", str(five_frames)]
    assert main(argv) == 2
    check_one_line(capsys, str(model))
    with pytest.raises(TensorPotError):
        main(argv + ["--debug"])
    assert not marker.exists()


def test_not_a_model_file(tmp_path, capsys, five_frames):
    model = tmp_path / "text.model"
    model.write_text("not a model\n")
    assert main(["eval", "--model", str(model), "--data", str(five_frames)]) == 2
    check_one_line(capsys, str(model))


def test_unknown_reader_option_for_npz(tmp_path, capsys, model_file):
    data = tmp_path / "d.npz"
    data.write_bytes(b"")
    argv = ["eval", "--model", str(model_file), "--data", str(data), "--stress-key", "s"]
    assert main(argv) == 2
    check_one_line(capsys, str(data))


def test_damaged_model_file(tmp_path, capsys, five_frames):
    """50 flipped bytes in the weights: refused on load, not predictions of 1e24 meV."""
    from tests.evaluation.tiny import tiny_model
    from tests.models.test_io import _flip_bytes_of, _largest_tensor

    model = tiny_model()
    path = tensorpot.save_model(model, tmp_path / "m.model")
    _flip_bytes_of(path, _largest_tensor(model))
    argv = ["eval", "--model", str(path), "--data", str(five_frames)]
    assert main(argv) == 2
    check_one_line(capsys, str(path), "damaged")
