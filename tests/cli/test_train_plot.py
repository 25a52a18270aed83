"""``tensorpot train`` (argument passing, config errors, a tiny real run) and ``tensorpot plot``."""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import tensorpot.training
from tensorpot.cli.main import main
from tests.cli.conftest import stderr_lines
from tests.evaluation.tiny import THREE_BPA, TINY

config_module = pytest.importorskip("tensorpot.config")


def fake_train(monkeypatch) -> list:
    """Replace load_run_config and train by recorders; returns the list of recorded calls."""
    calls = []

    def load(path, overrides=()):
        calls.append(("load", path, list(overrides)))
        return {"loaded": path}

    def train(config, resume=False, handle_signals=False):
        assert handle_signals  # the command stops cleanly on SIGINT and SIGTERM
        calls.append(("train", config, resume))
        return SimpleNamespace(stopped=None)

    monkeypatch.setattr(config_module, "load_run_config", load)
    monkeypatch.setattr(tensorpot.training, "train", train, raising=False)
    return calls


def test_train_passes_overrides_in_order(monkeypatch):
    calls = fake_train(monkeypatch)
    argv = ["train", "run.yaml", "--model.num_channels=16", "max_num_epochs=3", "--resume",
            "--name=a=b", "model.radial_MLP=[8, 8]"]  # fmt: skip
    assert main(argv) == 0
    assert calls == [
        ("load", "run.yaml",
         ["model.num_channels=16", "max_num_epochs=3", "name=a=b", "model.radial_MLP=[8, 8]"]),
        ("train", {"loaded": "run.yaml"}, True),
    ]  # fmt: skip


def test_train_without_resume(monkeypatch):
    calls = fake_train(monkeypatch)
    assert main(["train", "run.yaml"]) == 0
    assert calls == [("load", "run.yaml", []), ("train", {"loaded": "run.yaml"}, False)]


@pytest.mark.parametrize("bad", ["--max_num_epochs", "epochs", "=3"])
def test_train_rejects_overrides_without_value(monkeypatch, capsys, bad):
    calls = fake_train(monkeypatch)
    assert main(["train", "run.yaml", bad]) == 2
    assert "usage:" in capsys.readouterr().err and calls == []


def test_train_config_errors_are_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    assert main(["train", str(missing)]) == 2
    lines = stderr_lines(capsys)
    assert (
        len(lines) == 1 and lines[0].startswith("tensorpot: error: ") and str(missing) in lines[0]
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"train_file: {THREE_BPA / 'train_300K.xyz'}\nmax_num_epoch: 3\n")
    assert main(["train", str(bad)]) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and "max_num_epoch" in lines[0]
    with pytest.raises(config_module.ConfigError):
        main(["train", str(bad), "--debug"])


def real_train():
    """``tensorpot.training.train``, or skip while the trainer is not importable."""
    try:
        module = importlib.import_module("tensorpot.training")
        return module.train
    except (ImportError, AttributeError) as err:
        pytest.skip(f"tensorpot.training.train is not available yet ({err})")


def test_tiny_training_run_then_eval_and_plot(tmp_path, capsys, five_frames):
    real_train()
    pytest.importorskip("matplotlib")
    model = {k: v for k, v in TINY.items() if k not in ("model", "E0s", "atomic_numbers")}
    lines = [
        f"train_file: {THREE_BPA / 'train_300K.xyz'}",
        "max_train_frames: 4", "max_valid_frames: 2", "batch_size: 4",
        "max_num_epochs: 3", "progress_bar: false", "name: tiny",
        f"output_dir: {tmp_path / 'run'}",
        "model:", *(f"  {k}: {v}" for k, v in model.items()),
    ]  # fmt: skip
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("\n".join(lines) + "\n")
    assert main(["train", str(yaml_file), "--max_num_epochs=1", "model.num_channels=4"]) == 0
    assert "epoch 1/1, train loss" in capsys.readouterr().out
    run = tmp_path / "run"
    model_file, log = run / "tiny.model", run / "log.csv"
    assert model_file.is_file() and log.is_file() and (run / "train.log").is_file()
    assert log.read_text().splitlines()[0].startswith("epoch,")
    assert len(log.read_text().splitlines()) == 2  # the override set one epoch
    assert main(["train", str(yaml_file)]) == 2  # would overwrite the run
    capsys.readouterr()
    out = tmp_path / "pred.extxyz"
    argv = ["eval", "--model", str(model_file), "--data", str(five_frames), "--output", str(out)]
    assert main(argv) == 0
    assert "forces_rmse" in capsys.readouterr().out and out.is_file()
    png = tmp_path / "curves.png"
    assert main(["plot", "--log", str(log), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sigterm_stops_training_after_the_epoch_and_resume_continues(tmp_path):
    """A batch system's SIGTERM: the epoch in progress ends with a checkpoint, exit 130, and
    ``--resume`` goes on from that epoch."""
    real_train()
    model = {k: v for k, v in TINY.items() if k not in ("model", "E0s", "atomic_numbers")}
    run = tmp_path / "run"
    lines = [
        f"train_file: {THREE_BPA / 'train_300K.xyz'}", "max_train_frames: 4",
        "max_valid_frames: 2", "batch_size: 2", "max_num_epochs: 100000",
        "progress_bar: false", "name: tiny", f"output_dir: {run}", "checkpoint_interval: 100000",
        "model:", *(f"  {k}: {v}" for k, v in model.items()),
    ]  # fmt: skip
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text("\n".join(lines) + "\n")
    argv = [sys.executable, "-m", "tensorpot", "train", str(yaml_file)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log, deadline = run / "log.csv", time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:  # two epochs done
            break
        time.sleep(0.1)
    child.send_signal(signal.SIGTERM)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 130, err
    epochs = len(log.read_text().splitlines()) - 1
    assert f"interrupted (SIGTERM) after epoch {epochs}; train --resume continues it" in err
    assert "stopped by SIGTERM after epoch" in out and not (run / "errors.md").exists()
    assert (run / "checkpoints" / f"tiny_epoch-{epochs}.pt").is_file()
    assert main(["train", str(yaml_file), f"max_num_epochs={epochs + 1}", "--resume"]) == 0
    assert len(log.read_text().splitlines()) - 1 == epochs + 1 and (run / "errors.md").exists()


def test_train_and_resume_agree_on_a_model_without_checkpoint(tmp_path, capsys):
    """A run killed before its first checkpoint: both commands name the same way out."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "tiny.model").write_bytes(b"kept")
    yaml_file = tmp_path / "run.yaml"
    yaml_file.write_text(
        f"train_file: {THREE_BPA / 'train_300K.xyz'}\nname: tiny\noutput_dir: {run}\n"
    )
    assert main(["train", str(yaml_file)]) == 2
    fresh = stderr_lines(capsys)
    assert main(["train", str(yaml_file), "--resume"]) == 2
    resumed = stderr_lines(capsys)
    assert fresh == resumed and len(fresh) == 1
    assert f"move {run / 'tiny.model'} away" in fresh[0]
    assert (run / "tiny.model").read_bytes() == b"kept"


def test_plot_learning_curves(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    log = tmp_path / "log.csv"
    log.write_text("epoch,lr,train_loss,valid_loss,stage,time_s\n1,0.01,2.0,2.5,1,0.3\n"
                   "2,0.01,1.0,,1,0.3\n3,0.008,0.5,0.7,2,0.3\n")  # fmt: skip
    png = tmp_path / "curves.png"
    assert main(["plot", "--log", str(log), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", "--log", str(log), "--out", str(png)]) == 2  # refuses to overwrite
    assert len(stderr_lines(capsys)) == 2  # the "wrote" line, then one error line
    assert main(["plot", "--log", str(log), "--out", str(png), "--overwrite"]) == 0


def test_plot_missing_log(tmp_path, capsys):
    log = tmp_path / "nope.csv"
    assert main(["plot", "--log", str(log), "--out", str(tmp_path / "c.png")]) == 2
    lines = stderr_lines(capsys)
    assert len(lines) == 1 and str(log) in lines[0]
    assert not Path(tmp_path / "c.png").exists()
