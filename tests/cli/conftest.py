"""Fixtures of the CLI tests: a saved tiny model and five labelled 3BPA frames."""

from __future__ import annotations

import pytest

import tensorpot
from tests.evaluation.tiny import frames_text, tiny_model, write_frames


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.model"
    return tensorpot.save_model(tiny_model(), path)


@pytest.fixture(scope="session")
def five_frames(tmp_path_factory):
    return write_frames(tmp_path_factory.mktemp("data") / "five.xyz", frames_text(5))


def stderr_lines(capsys) -> list[str]:
    """The non-empty stderr lines written since the last call."""
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]
