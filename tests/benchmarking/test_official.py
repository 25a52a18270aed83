"""benchmarks/official.py (the official FreeCG and QuinNet through the reference loaders, PyG's
ViSNet) and benchmarks/run.py's suites, on tiny models. Skipped, saying why, where the
reference code or torch_geometric is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))  # as `python benchmarks/run.py` has it

import official  # noqa: E402
import run  # noqa: E402
from tensorpot.benchmarking.adapters import TensorPot  # noqa: E402
from tensorpot.benchmarking.harness import Case, Workload, load_frames, peak_memory  # noqa: E402

WHY = official.reference_missing("freecg") or official.reference_missing("quinnet")
pytestmark = pytest.mark.skipif(WHY is not None, reason=f"reference code: {WHY}")

FRAMES = load_frames(run.DATA["3bpa"], 2)
TINY = {
    "FreeCG": official.FreeCGOfficial(num_layers=1, embedding_dimension=16, num_groups=2,
                                      num_heads=2, num_rbf=4),
    "QuinNet": official.QuinNetOfficial(num_layers=1, embedding_dimension=16, num_heads=2,
                                        num_rbf=4),
    "PyG ViSNet": official.PyGViSNet(num_layers=1, hidden_channels=16, num_heads=2, num_rbf=4),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(TINY))
@pytest.mark.parametrize(("task", "dtype"), [("forces", "float64"), ("energy", "float32"),
                                             ("train", "float32")])  # fmt: skip
def test_shapes_and_the_default_dtype_left_alone(name, task, dtype):
    before = torch.get_default_dtype()
    workload = Workload("3bpa", FRAMES, dtype, task)
    out = TINY[name].prepare(workload)()
    assert torch.get_default_dtype() == before
    assert out.energy.shape == (2,) and out.energy.dtype == workload.torch_dtype
    if task == "energy":
        assert out.forces is None
    else:
        assert out.forces.shape == (54, 3) and out.forces.dtype == workload.torch_dtype


def test_every_suite_names_the_models_of_its_ratios():
    args = run.main.__globals__["argparse"].Namespace(channels=2, max_L=1, max_ell=1,
                                                      correlation=1)  # fmt: skip
    for name, suite in run.SUITES.items():
        names = [m.name for m in suite.models(args)]
        assert len(set(names)) == len(names), name
        assert {n for pair in suite.ratios for n in pair} <= set(names), name
    freecg = run.SUITES["freecg"].models(args)
    assert [m.config for m in freecg[:2]] == [{"model": "freecg"}, {"model": "visnet"}]
    assert freecg[2].overrides == {}  # the released config


def tiny_suite(isolate: bool) -> run.Suite:
    ours = TensorPot({"model": "visnet", "num_channels": 8, "num_interactions": 1, "num_heads": 2},
                     "ours")  # fmt: skip
    return run.Suite(lambda args: [ours, TINY["FreeCG"]], ("3bpa",), (2,), ("float64",),
                     (("ours", "official FreeCG"),), memory=("3bpa", 2, "float64"),
                     isolate=isolate)  # fmt: skip


def test_a_suite_in_this_process(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(run.SUITES, "tiny", tiny_suite(isolate=False))
    out = tmp_path / "report.md"
    run.main(["--suite", "tiny", "--repeats", "1", "--memory", "none", "--output", str(out)])
    text = capsys.readouterr().out
    assert "| workload | atoms | ours | official FreeCG | ours / official FreeCG |" in text
    (row,) = [line for line in text.splitlines() if line.startswith("| 3bpa, batch 2")]
    assert "–" not in row and "peak memory" not in text
    assert out.read_text().endswith(text)


def test_an_official_model_in_a_child_process():
    case = Case(TINY["FreeCG"], Workload("3bpa", FRAMES))
    memory = peak_memory(case, calls=1, threads=1)
    assert memory["process_peak"] >= memory["peak"] > 0


@pytest.mark.slow
def test_a_suite_in_child_processes(monkeypatch, capsys):
    monkeypatch.setitem(run.SUITES, "tiny", tiny_suite(isolate=True))
    run.main(["--suite", "tiny", "--repeats", "1", "--threads", "1"])
    text = capsys.readouterr().out
    rows = [line for line in text.splitlines() if line.startswith("| 3bpa, batch 2")]
    assert len(rows) == 2 and "–" not in rows[0] + rows[1]  # the times, the first memory row
    assert "|  | ratio ours / official FreeCG |" in text
