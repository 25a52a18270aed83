"""Fixtures of the training tests: a few 3BPA frames and a tiny, fast run config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tensorpot.data.readers import read_configurations

DATA = Path(__file__).parents[2] / "data" / "3bpa"
LINES_PER_FRAME = 27 + 2  # 3BPA: 27 atoms, a count line and a comment line per frame


def write_frames(source: Path, target: Path, num_frames: int) -> Path:
    """Copy the first ``num_frames`` frames of a 27-atom extxyz file."""
    with open(source, encoding="utf-8") as handle:
        lines = [next(handle) for _ in range(num_frames * LINES_PER_FRAME)]
    target.write_text("".join(lines), encoding="utf-8")
    return target


@pytest.fixture(scope="session")
def frames_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 10 frames of 3BPA train_300K.xyz."""
    folder = tmp_path_factory.mktemp("data")
    return write_frames(DATA / "train_300K.xyz", folder / "train10.xyz", 10)


@pytest.fixture(scope="session")
def test_frames_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 3 frames of 3BPA test_600K_first200.xyz."""
    folder = tmp_path_factory.mktemp("data")
    return write_frames(DATA / "test_600K_first200.xyz", folder / "test600.xyz", 3)


@pytest.fixture(scope="session")
def e0s() -> dict[int, float]:
    """Isolated-atom energies of 3BPA, read from iso_atoms.xyz."""
    return {int(c.numbers[0]): c.energy for c in read_configurations(DATA / "iso_atoms.xyz")}


def tiny_run(train_file: Path, output_dir: Path, e0s: dict[int, float], **extra: Any) -> dict:
    """A run config for a very small ICTP model on 8 training and 2 validation frames."""
    config = {
        "train_file": str(train_file),
        "valid_fraction": 0.2,
        "E0s": e0s,
        "batch_size": 4,
        "valid_batch_size": 5,
        "max_num_epochs": 5,
        "lr": 0.01,
        "output_dir": str(output_dir),
        "name": "tiny",
        "progress_bar": False,
        "model": {
            "num_channels": 4,
            "max_L": 1,
            "max_ell": 1,
            "correlation": 2,
            "num_interactions": 1,
            "radial_MLP": [8],
            "r_max": 4.0,
        },
    }
    config.update(extra)
    return config
