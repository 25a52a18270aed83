"""End-to-end training on a few 3BPA frames: learning, exact resume, outputs, safety."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import torch

import tensorpot
from tensorpot.config import parse_run_config
from tensorpot.errors import DataError, TensorPotError
from tensorpot.models.io import read_model_file
from tensorpot.training import TrainResult, train
from tensorpot.training import trainer as trainer_module
from tensorpot.training.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from tensorpot.training.state import loss_weights, make_state, parameter_groups
from tests.training.conftest import tiny_run


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def without_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, frames_file, test_frames_file, e0s) -> TrainResult:
    """An uninterrupted 5-epoch run with a test file."""
    out = tmp_path_factory.mktemp("full") / "run"
    config = tiny_run(frames_file, out, e0s, test_files=[str(test_frames_file)])
    return train(config)


def test_training_loss_decreases(full_run):
    rows = read_log(full_run.history_path)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]
    losses = [float(r["train_loss"]) for r in rows]
    assert losses[-1] < losses[0]
    assert all(r["valid_loss"] != "" for r in rows)


def test_outputs_of_a_run(full_run):
    assert full_run.epochs_run == 5
    model = tensorpot.load_model(full_run.model_path)
    assert model.config.dtype == "float64" and model.config.avg_num_neighbors > 1
    assert model.atomic_numbers == (1, 6, 7, 8)  # elements found in the training set
    assert set(full_run.error_tables) == {"valid", "test600"}
    assert "forces_rmse" in full_run.error_tables["test600"]
    assert "| test600 |" in full_run.errors_path.read_text()
    losses = [float(r["valid_loss"]) for r in read_log(full_run.history_path)]
    assert full_run.best_valid_loss == pytest.approx(min(losses))
    assert len(list_checkpoints(full_run.model_path.parent / "checkpoints")) == 1


def test_resume_reaches_the_uninterrupted_state(tmp_path, full_run, frames_file, e0s):
    out = tmp_path / "run"
    config = tiny_run(frames_file, out, e0s)
    train({**config, "max_num_epochs": 2})
    resumed = train(config, resume=True)
    assert resumed.epochs_run == 5
    a = load_checkpoint(latest_checkpoint(out / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(full_run.model_path.parent / "checkpoints"))
    assert_same_tensors(a["model"], b["model"])
    for x, y in zip(a["ema"]["shadow"], b["ema"]["shadow"]):
        assert torch.equal(x, y)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
    assert a["scheduler"] == b["scheduler"]
    best_a = read_model_file(resumed.model_path)["state_dict"]
    best_b = read_model_file(full_run.model_path)["state_dict"]
    assert_same_tensors(best_a, best_b)
    assert without_time(read_log(resumed.history_path)) == without_time(
        read_log(full_run.history_path)
    )


def crash_in_epoch(monkeypatch, crash: int) -> None:
    """Make training raise KeyboardInterrupt as epoch ``crash`` starts (``monkeypatch.undo()``
    ends it)."""
    real_epoch = trainer_module.train_epoch

    def crashing(state, dataset, cfg, epoch, bar, *rest):
        if epoch == crash:
            raise KeyboardInterrupt
        return real_epoch(state, dataset, cfg, epoch, bar, *rest)

    monkeypatch.setattr(trainer_module, "train_epoch", crashing)


def test_resume_after_a_crash(tmp_path, full_run, frames_file, e0s, monkeypatch):
    out = tmp_path / "run"
    config = tiny_run(frames_file, out, e0s, checkpoint_interval=2)
    crash_in_epoch(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert len(read_log(out / "log.csv")) == 3  # epochs 1-3 logged, checkpoint after 2
    monkeypatch.undo()
    resumed = train(config, resume=True)
    reference = read_model_file(full_run.model_path)["state_dict"]
    assert_same_tensors(read_model_file(resumed.model_path)["state_dict"], reference)
    assert [int(r["epoch"]) for r in read_log(resumed.history_path)] == [1, 2, 3, 4, 5]


def test_refuses_to_overwrite_a_run(tmp_path, frames_file, e0s):
    out = tmp_path / "run"
    config = tiny_run(frames_file, out, e0s, max_num_epochs=1)
    train(config)
    model_bytes = (out / "tiny.model").read_bytes()
    with pytest.raises(TensorPotError, match="already holds a model and checkpoints"):
        train(config)
    assert (out / "tiny.model").read_bytes() == model_bytes
    (out / "tiny.model").unlink()
    with pytest.raises(TensorPotError, match="resume"):
        train(config)  # the checkpoints alone are protected too
    (out / "tiny.model").write_bytes(model_bytes)
    for path in (out / "checkpoints").iterdir():
        path.unlink()
    with pytest.raises(TensorPotError, match="nothing to resume"):
        train(config, resume=True)  # nothing to resume from, and a model to protect
    assert (out / "tiny.model").read_bytes() == model_bytes


def test_a_model_without_checkpoint_gets_one_way_out(tmp_path, frames_file, e0s):
    """A run killed between its first best model and its first checkpoint: fresh and resumed
    runs give the same message, name the model file, and leave it alone."""
    out = tmp_path / "run"
    out.mkdir()
    model = out / "tiny.model"
    model.write_bytes(b"the user's model")
    config = tiny_run(frames_file, out, e0s)
    messages = []
    for resume in (False, True):
        with pytest.raises(TensorPotError) as info:
            train(config, resume=resume)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "nothing to resume" in messages[0] and f"move {model} away" in messages[0]
    assert model.read_bytes() == b"the user's model"
    assert sorted(p.name for p in out.iterdir()) == ["tiny.model"]  # nothing written


def test_a_run_killed_after_its_first_best_model_resumes(
    tmp_path, full_run, frames_file, e0s, monkeypatch
):
    """With the default 10-epoch interval, the first best model comes with a checkpoint."""
    out = tmp_path / "run"
    config = tiny_run(frames_file, out, e0s)
    crash_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train(config)
    assert (out / "tiny.model").is_file()
    monkeypatch.undo()
    resumed = train(config, resume=True)
    reference = read_model_file(full_run.model_path)["state_dict"]
    assert_same_tensors(read_model_file(resumed.model_path)["state_dict"], reference)


class FakeClock:
    """Seconds that pass only when an epoch is trained."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __call__(self) -> float:
        return self.seconds


@pytest.mark.parametrize(("minutes", "newest"), [(7.0, [1, 1, 3, 3]), (60.0, [1, 1, 1, 1])])
def test_checkpoints_by_time(tmp_path, frames_file, e0s, monkeypatch, minutes, newest):
    """Every epoch takes 4 minutes of a fake clock and the interval is 100 epochs: after the
    first best model (epoch 1) the next checkpoint comes once ``checkpoint_minutes`` passed."""
    out = tmp_path / "run"
    config = tiny_run(frames_file, out, e0s, checkpoint_interval=100, checkpoint_minutes=minutes)
    clock, seen = FakeClock(), []
    real_epoch = trainer_module.train_epoch

    def four_minutes(state, dataset, cfg, epoch, bar, *rest):
        if epoch > 1:  # the newest checkpoint when this epoch starts
            seen.append(list_checkpoints(out / "checkpoints")[-1][0])
        clock.seconds += 4 * 60.0
        return real_epoch(state, dataset, cfg, epoch, bar, *rest)

    monkeypatch.setattr(trainer_module, "train_epoch", four_minutes)
    train(config, clock=clock)
    assert seen == newest
    assert [e for e, _ in list_checkpoints(out / "checkpoints")] == [5]  # the last epoch's


@pytest.mark.parametrize("e0_spec", ["average", "given"])
def test_an_element_missing_from_the_model_names_file_frame_and_element(
    tmp_path, frames_file, e0s, e0_spec
):
    """3BPA has H, C, N and O: a model of H, C and N says so before any E0 is looked for."""
    model = {**tiny_run(frames_file, tmp_path, e0s)["model"], "atomic_numbers": [1, 6, 7]}
    spec = "average" if e0_spec == "average" else {z: e for z, e in e0s.items() if z != 8}
    config = tiny_run(frames_file, tmp_path / "run", e0s, E0s=spec, model=model)
    with pytest.raises(DataError) as info:
        train(config)
    assert info.value.file == str(frames_file) and info.value.frame is not None
    assert (
        info.value.problem == "train set: element O is not in the model's atomic_numbers [1, 6, 7]"
    )


def test_time_budget_stops_after_the_first_epoch(tmp_path, frames_file, e0s):
    out = tmp_path / "run"
    ticks = iter(range(0, 10**6, 60))  # a clock that advances a minute per reading
    result = train(
        tiny_run(frames_file, out, e0s, time_budget_minutes=0.5), clock=lambda: next(ticks)
    )
    assert result.epochs_run == 1
    assert len(read_log(result.history_path)) == 1
    assert load_checkpoint(latest_checkpoint(out / "checkpoints"))["epoch"] == 1
    assert result.model_path.is_file()


def test_stage_two_switches_lr_and_weights(frames_file, tmp_path, e0s):
    config = parse_run_config(
        tiny_run(frames_file, tmp_path, e0s, stage_two=True, max_num_epochs=8, stage_two_lr=1e-4)
    )
    model = tensorpot.build_model({"model": "ictp", **config.model})
    state = make_state(model, config)
    state.best_valid_loss = 1.0
    for epoch in range(1, 7):  # stage two starts after 8 * 3 // 4 = 6 epochs
        state.maybe_start_stage_two(epoch, config)
    assert not state.stage_two and state.lr == config.lr
    assert loss_weights(config, state.stage_two).energy == config.energy_weight
    state.maybe_start_stage_two(7, config)
    assert state.stage_two and state.lr == 1e-4 and state.best_valid_loss == float("inf")
    weights = loss_weights(config, True)
    assert (weights.energy, weights.forces) == (1000.0, 100.0)


def test_weight_decay_only_on_post_weights_and_product_basis():
    model = tensorpot.build_model(
        {"model": "ictp", "num_channels": 4, "max_L": 1, "correlation": 2, "radial_MLP": [8]}
    )
    groups = {g["name"]: g for g in parameter_groups(model, 5e-7)}
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups["decay"]["params"]}
    assert groups["decay"]["weight_decay"] == 5e-7 and groups["no_decay"]["weight_decay"] == 0.0
    assert decayed and all(
        ".interaction.post_weights." in n or ".product." in n or ".update." in n for n in decayed
    )
    assert not any("embedding" in n or "readout" in n or "radial" in n for n in decayed)
    assert all(re.match(model.WEIGHT_DECAY, n) for n in decayed)
    total = sum(len(g["params"]) for g in groups.values())
    assert total == len(list(model.parameters()))
