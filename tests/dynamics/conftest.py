"""Fixtures of the MD tests: the tiny model and one 3BPA molecule."""

from __future__ import annotations

import pytest

from tests.evaluation.tiny import frames_text, tiny_model, write_frames


@pytest.fixture(scope="session")
def model():
    return tiny_model()


@pytest.fixture(scope="session")
def molecule_file(tmp_path_factory):
    """One 27-atom 3BPA frame (no periodic cell)."""
    return write_frames(tmp_path_factory.mktemp("md") / "start.xyz", frames_text(1))
