"""A tiny saved model and a few 3BPA frames, shared by the evaluation and CLI tests."""

from __future__ import annotations

from pathlib import Path

import tensorpot
from tensorpot.models.base import Potential

THREE_BPA = Path(__file__).parents[2] / "data" / "3bpa"
TEST_300K = THREE_BPA / "test_300K_first200.xyz"
#: Isolated-atom energies of H, C, N, O (eV), so predicted energies are near the labels.
E0S = {1: -13.587, 6: -1029.489, 7: -1484.981, 8: -2041.982}
TINY = {
    "model": "ictp",
    "num_channels": 4,
    "max_L": 1,
    "correlation": 2,
    "radial_MLP": [8],
    "r_max": 4.0,
    "num_interactions": 2,
    "atomic_numbers": [1, 6, 7, 8],
    "E0s": E0S,
}


def tiny_model(**overrides) -> Potential:
    """The tiny ICTP model (float64 unless overridden)."""
    return tensorpot.build_model({**TINY, **overrides})


def frames_text(n: int = 5) -> list[list[str]]:
    """The first ``n`` frames of the 3BPA 300 K test file, each a list of lines (with newlines)."""
    lines = TEST_300K.read_text(encoding="utf-8").splitlines(keepends=True)
    frames, pos = [], 0
    while len(frames) < n:
        count = int(lines[pos])
        frames.append(lines[pos : pos + count + 2])
        pos += count + 2
    return frames


def write_frames(path: Path, frames: list[list[str]]) -> Path:
    """Write frames (lists of lines) to ``path``."""
    path.write_text("".join("".join(f) for f in frames), encoding="utf-8")
    return path
