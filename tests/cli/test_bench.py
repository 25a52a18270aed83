"""`tensorpot bench` runs the ICTP side and reports every peer as skipped or measured."""

from __future__ import annotations

import pytest

from tensorpot.cli.main import main


@pytest.mark.slow
def test_bench_prints_a_table(capsys, tmp_path):
    frames = tmp_path / "frames.xyz"
    src = (
        __import__("pathlib").Path(__file__).parents[2] / "data" / "3bpa" / "test_300K_first200.xyz"
    )
    lines = src.read_text().splitlines(keepends=True)
    frames.write_text("".join(lines[: 2 * 29]))  # two 27-atom frames
    code = main(["bench", "--channels", "2", "--max-L", "1", "--max-ell", "1", "--correlation",
                 "1", "--batch", "2", "--repeats", "1", "--data", str(frames)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "| tensorpot ICTP |" in out and "ms / structure" in out
    for peer in ("MACE", "FlashCart"):
        assert (f"| {peer} |" in out and f"| ratio tensorpot / {peer} |" in out) or (
            f"{peer} skipped" in out
        )


def test_bench_missing_data_is_one_line(capsys, tmp_path):
    code = main(["bench", "--data", str(tmp_path / "nope.xyz")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.xyz" in err[0]
