"""benchmarks/protocols.py with protocol_jobs.py and protocol_report.py: the state kept under
``pretrained/`` continues a run on a machine whose run folders are gone (restore, then save,
gives back the committed files), the training command it continues with, the hours of MACE's
log across sessions, and the table."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))  # as `python benchmarks/protocols.py` has it

import protocol_jobs  # noqa: E402
import protocol_report  # noqa: E402
import protocols  # noqa: E402
from protocol_jobs import PROTOCOLS, REPO, STATE, read_progress, restore, save  # noqa: E402
from tensorpot.config import PATH_KEYS, load_run_config  # noqa: E402

COMMITTED = REPO / "pretrained"
JOBS = PROTOCOLS["rmd17-50"]
pytestmark = pytest.mark.skipif(
    not all((COMMITTED / job.name / "checkpoints").is_dir() for job in JOBS),
    reason="no rmd17-50 state under pretrained/",
)


def run_config(checkpoint: Path) -> dict:
    return torch.load(checkpoint, weights_only=True)["run_config"]


@pytest.fixture
def pretrained(tmp_path):
    """A copy of the committed rmd17-50 state as ``pretrained/`` (the real one is left alone)."""
    copy = tmp_path / "pretrained"
    for job in JOBS:
        shutil.copytree(COMMITTED / job.name, copy / job.name)
    state = json.loads((COMMITTED / STATE).read_text(encoding="utf-8"))
    (copy / STATE).write_text(json.dumps({"rmd17-50": state["rmd17-50"]}))
    return copy


def test_restore_then_save_gives_back_the_committed_state(pretrained, tmp_path):
    root = tmp_path / "runs"
    restore(root, "rmd17-50", pretrained)
    committed_hours = json.loads((pretrained / STATE).read_text())["rmd17-50"]["hours"]
    assert read_progress(root, "rmd17-50")["hours"] == committed_hours
    for job in JOBS:
        folder, saved = job.folder(root, "rmd17-50"), pretrained / job.name
        (checkpoint,) = (saved / "checkpoints").glob("*.pt")
        restored = folder / "checkpoints" / checkpoint.name
        # in the run folder the config's paths are absolute again, the same files as committed
        for key in PATH_KEYS:
            before, after = run_config(checkpoint).get(key), run_config(restored).get(key)
            for old, new in zip(*(v if isinstance(v, list) else [v] for v in (before, after))):
                if isinstance(old, str) and old:
                    assert os.path.isabs(new)
                    assert Path(new) == (REPO / old).resolve()
        for name in ("log.csv", f"{job.name}.model"):
            assert (folder / name).read_bytes() == (saved / name).read_bytes()
        assert "--resume" in protocols.tensorpot_command(job, root, "rmd17-50", 0, 1.0, pretrained)

    originals = {job.name: run_config(next((COMMITTED / job.name).glob("checkpoints/*.pt")))
                 for job in JOBS}  # fmt: skip
    shutil.rmtree(pretrained / JOBS[0].name / "checkpoints")
    save(root, pretrained)
    for job in JOBS:
        (checkpoint,) = (pretrained / job.name / "checkpoints").glob("*.pt")
        assert run_config(checkpoint) == originals[job.name]
    saved = json.loads((pretrained / STATE).read_text())
    assert saved["rmd17-50"]["hours"] == committed_hours


def test_a_run_folder_with_its_state_is_left_as_it_is(pretrained, tmp_path):
    root = tmp_path / "runs"
    folder = JOBS[0].folder(root, "rmd17-50")
    (folder / "checkpoints").mkdir(parents=True)
    newer = folder / "checkpoints" / f"{JOBS[0].name}_epoch-7.pt"
    newer.write_bytes(b"not the committed one")
    protocol_jobs.write_progress(root, "rmd17-50", {"hours": 0.5, "sessions": [{"hours": 0.5}]})
    restore(root, "rmd17-50", pretrained)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [newer.name]
    assert read_progress(root, "rmd17-50")["hours"] == 0.5


def test_without_checkpoints_a_job_starts_from_the_committed_model(pretrained, tmp_path):
    job = JOBS[0]
    shutil.rmtree(pretrained / job.name / "checkpoints")
    root = tmp_path / "runs"
    restore(root, "rmd17-50", pretrained)
    command = protocols.tensorpot_command(job, root, "rmd17-50", 0, 1.0, pretrained)
    assert "--resume" not in command
    assert f"init_model={pretrained / job.name / f'{job.name}.model'}" in command
    assert command[:3] == ["taskset", "-c", "0"]


def test_finished_by_epochs_or_by_hours(pretrained, tmp_path):
    root = tmp_path / "runs"
    restore(root, "rmd17-50", pretrained)
    limit = load_run_config(JOBS[0].preset).max_num_epochs
    logs = [j.folder(root, "rmd17-50") / "log.csv" for j in JOBS]
    assert all(int(protocol_jobs.log_rows(p.parent)[-1]["epoch"]) == limit for p in logs)
    assert protocol_jobs.finished(root, "rmd17-50", 1e9)  # every job trained its epochs
    lines = logs[0].read_text(encoding="utf-8").splitlines(keepends=True)
    logs[0].write_text("".join(lines[:11]), encoding="utf-8")  # one job after 10 epochs
    assert not protocol_jobs.finished(root, "rmd17-50", 1e9)
    assert protocol_jobs.finished(root, "rmd17-50", 1e-3)  # its hours are spent
    assert not protocol_jobs.finished(tmp_path / "empty", "rmd17-50", 1.0)


def test_mace_curve_sums_the_sessions_hours(tmp_path):
    def line(stamp: str, text: str) -> str:
        return f"2026-12-07 {stamp}.000 INFO: {text}"

    def epoch(n: int, e: float, f: float) -> str:
        return (f"Epoch {n}: head: Default, loss=0.001, RMSE_E=   {e:.2f} meV, "
                f"RMSE_F=   {f:.2f} meV / A")  # fmt: skip

    log = tmp_path / "mace_train.out"
    log.write_text("\n".join([
        "some line without a time stamp",
        line("08:00:00", "Started training, reporting errors on validation set"),
        line("08:30:00", epoch(0, 30.0, 60.0)),
        line("09:00:00", epoch(1, 20.0, 40.0)),
        line("09:40:00", "Saving model"),  # after the last epoch line: not counted
        line("12:00:00", "Started training, reporting errors on validation set"),
        line("12:15:00", epoch(1, 25.0, 41.0)),
    ]))  # fmt: skip
    curve = protocol_report.mace_curve(log)
    assert curve["hours"].tolist() == [0.5, 1.0, 1.25]
    assert curve["energy"].tolist() == [30.0, 20.0, 25.0]
    assert curve["forces"].tolist() == [60.0, 40.0, 41.0]


def test_table_puts_the_published_numbers_under_their_job():
    errors = {"rmd17_aspirin_test_01": {"energy_mae": 20.04, "forces_mae": 45.16}}
    results = {"rmd17-aspirin-50": {"errors": errors, "epochs": 2000, "best_epoch": 1990,
                                    "hours": 1.13, "lr": 1e-3}}  # fmt: skip
    lines = protocol_report.table(results, "rmd17-50")
    assert lines[2] == "| rmd17-aspirin-50 | 20.0 | 45.2 | 2000 (1990) | 1.1 | 0.001 |"
    assert lines[3] == "| published: MACE, N = 50 | 17.0 | 43.9 | | | |"
    assert lines[4].startswith("| rmd17-ethanol-50 | - | - | not run")
    assert len({line.count("|") for line in lines}) == 1
