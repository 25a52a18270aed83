"""Run configs: defaults, YAML paths, overrides, and one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tensorpot.config import RunConfig, load_run_config, parse_run_config
from tensorpot.errors import ConfigError
from tensorpot.training import train
from tests.training.conftest import tiny_run


@pytest.fixture()
def yaml_file(tmp_path: Path) -> Path:
    (tmp_path / "train.xyz").write_text("placeholder\n")
    (tmp_path / "test.xyz").write_text("placeholder\n")
    path = tmp_path / "run.yaml"
    path.write_text(
        "train_file: train.xyz\ntest_files: [test.xyz]\nmax_num_epochs: 7\n"
        "model:\n  num_channels: 8\n  max_L: 1\n"
    )
    return path


def one_line_error(path, overrides) -> str:
    with pytest.raises(ConfigError) as info:
        load_run_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults_follow_mace(yaml_file):
    config = load_run_config(yaml_file, [])
    assert isinstance(config, RunConfig)
    assert (config.forces_weight, config.energy_weight, config.batch_size) == (100.0, 1.0, 10)
    assert config.ema and config.amsgrad and config.ema_decay == 0.99
    assert config.run_dir == Path("runs") / "model"
    assert config.stage_two_start == 7 * 3 // 4
    with pytest.raises(ValidationError):  # frozen
        config.lr = 1.0  # type: ignore[misc]


def test_paths_are_relative_to_the_yaml_folder(yaml_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    config = load_run_config(yaml_file, [])
    assert Path(config.train_file) == tmp_path / "train.xyz"
    assert [Path(p) for p in config.test_files] == [tmp_path / "test.xyz"]


def test_overrides_set_plain_and_nested_keys(yaml_file):
    config = load_run_config(
        yaml_file,
        ["model.num_channels=16", "lr=0.005", "clip_grad=null", "E0s={1: -13.5, C: -1029.4}"],
    )
    assert config.model["num_channels"] == 16 and config.model["max_L"] == 1
    assert config.lr == 0.005 and config.clip_grad is None
    assert config.E0s == {1: -13.5, "C": -1029.4}
    assert load_run_config(yaml_file, ["E0s=average"]).E0s == "average"


def test_unknown_key_names_it(yaml_file):
    assert one_line_error(yaml_file, ["learning_rate=0.1"]).startswith("learning_rate: unknown key")
    assert one_line_error(yaml_file, ["max_num_epoch=3"]).startswith("max_num_epoch:")
    assert "max_num_epochs" in one_line_error(yaml_file, ["max_num_epoch=3"])  # suggestion
    assert one_line_error(yaml_file, ["model.num_chanels=3"]).startswith("model.num_chanels:")


def test_wrong_type_names_the_key(yaml_file):
    assert one_line_error(yaml_file, ["batch_size=many"]).startswith("batch_size:")
    assert one_line_error(yaml_file, ["lr=[1, 2]"]).startswith("lr:")
    assert one_line_error(yaml_file, ["model.num_channels=x"]).startswith("model.num_channels:")
    assert one_line_error(yaml_file, ["E0s=avg"]).startswith("E0s:")
    assert one_line_error(yaml_file, ["energy_unit=furlong"]).startswith("energy_unit:")


def test_missing_train_file_names_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("max_num_epochs: 3\n")
    assert one_line_error(path, []).startswith("train_file:")
    with pytest.raises(ConfigError, match="^train_file:"):
        parse_run_config({"max_num_epochs": 3})


def test_missing_files_and_bad_yaml_name_the_file(yaml_file, tmp_path):
    assert "nope.xyz" in one_line_error(yaml_file, ["train_file=nope.xyz"])
    assert one_line_error(yaml_file, ["valid_file=nope.xyz"]).startswith("valid_file:")
    missing = tmp_path / "absent.yaml"
    assert str(missing) in one_line_error(missing, [])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    assert one_line_error(bad, []).startswith(f"{bad}: invalid YAML")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    assert str(listing) in one_line_error(listing, [])


def test_malformed_override(yaml_file):
    assert "lrx" in one_line_error(yaml_file, ["lrx"])
    assert one_line_error(yaml_file, ["max_num_epochs.x=1"]).startswith("max_num_epochs.x:")


def test_a_device_this_machine_lacks_names_the_key(yaml_file, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    message = one_line_error(yaml_file, ["device=cuda"])
    assert message.startswith("device: 'cuda': CUDA is not available")
    assert one_line_error(yaml_file, ["device=gpu"]).startswith("device: 'gpu' is not a torch")
    assert load_run_config(yaml_file, ["device=cpu"]).device == "cpu"


def test_train_stops_on_a_missing_device_before_writing(tmp_path, frames_file, e0s, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="^device: 'cuda'"):
        train(tiny_run(frames_file, out, e0s, device="cuda"))
    assert not out.exists()


def test_checkpoint_minutes_has_a_default_and_must_be_positive(yaml_file):
    assert load_run_config(yaml_file, []).checkpoint_minutes == 10.0
    assert load_run_config(yaml_file, ["checkpoint_minutes=0.5"]).checkpoint_minutes == 0.5
    assert one_line_error(yaml_file, ["checkpoint_minutes=0"]).startswith("checkpoint_minutes:")
