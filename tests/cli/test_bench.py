"""`tensorpot bench`: a tensorpot model against every peer, each measured or reported as not
installed; its data is given, never looked up in a source checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from tensorpot.cli.main import main

FRAMES = Path(__file__).parents[2] / "data" / "3bpa" / "test_300K_first200.xyz"
TINY = ["--channels", "2", "--max-L", "1", "--max-ell", "1", "--correlation", "1", "--batch", "2",
        "--repeats", "1"]  # fmt: skip


def two_frames(tmp_path) -> Path:
    path = tmp_path / "frames.xyz"
    lines = FRAMES.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 2 * 29]))  # two 27-atom frames
    return path


@pytest.mark.slow
def test_bench_prints_the_tables(capsys, tmp_path):
    code = main(["bench", *TINY, "--data", str(two_frames(tmp_path))])
    out = capsys.readouterr().out
    assert code == 0
    assert "ms per structure" in out and "| workload | atoms | tensorpot ICTP |" in out
    assert "| frames.xyz, batch 2, float64, E + F | tensorpot ICTP |" in out  # memory
    for peer in ("MACE", "FlashCart"):
        assert f"tensorpot ICTP / {peer} |" in out or f"- {peer}, frames.xyz" in out


@pytest.mark.slow
def test_bench_any_family(capsys, tmp_path):
    model = '{"model": "visnet", "num_channels": 8, "num_interactions": 1, "num_heads": 2}'
    code = main(["bench", *TINY, "--energy-only", "--data", str(two_frames(tmp_path)),
                 "--model", model])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "| tensorpot visnet |" in out and "batch 2, float64, E |" in out


def test_bench_needs_data(capsys):
    assert main(["bench"]) == 2
    assert "--data" in capsys.readouterr().err


def test_bench_missing_data_is_one_line(capsys, tmp_path):
    code = main(["bench", "--data", str(tmp_path / "nope.xyz")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.xyz" in err[0]


@pytest.mark.parametrize("model", ["{model: ictp}", '{"model": "nope"}', '["ictp"]'])
def test_bench_bad_model_is_one_line(capsys, tmp_path, model):
    code = main(["bench", "--data", str(two_frames(tmp_path)), "--model", model])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model" in err[0]
