"""The README's main job, ``examples/demo.py``, runs from end to end (a short budget)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_demo_trains_tests_and_compares_with_the_pretrained_model(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "examples" / "demo.py"), "--minutes", "0.1",
         "--threads", "1", "--runs", str(tmp_path)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    (header,) = [k for k, line in enumerate(lines) if "pretrained F" in line]
    rows = {
        line.split()[0]: [float(v) for v in line.split()[1:]]
        for line in lines[header + 1 : header + 3]
    }
    assert set(rows) == {"test_300K_first200", "test_600K_first200"}
    for demo_e, demo_f, pretrained_e, pretrained_f in rows.values():
        assert pretrained_f < 100.0  # the committed model, trained for hours
        assert pretrained_f < demo_f and pretrained_e < demo_e  # the demo's few seconds
    assert len(list(tmp_path.glob("demo-*/ictp_3bpa_demo.model"))) == 1
    assert "F RMSE (eV/A)" in done.stdout  # the frames through the ASE calculator
