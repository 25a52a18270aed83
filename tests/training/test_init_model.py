"""``init_model``: a run that starts from a model file's architecture, statistics and weights."""

from __future__ import annotations

import pytest
import torch

from tensorpot.config import parse_run_config
from tensorpot.errors import ConfigError, TensorPotError
from tensorpot.models import load_model
from tensorpot.training import train
from tensorpot.training import trainer as trainer_module

from .conftest import tiny_run


@pytest.fixture(scope="module")
def trained(frames_file, e0s, tmp_path_factory):
    """A tiny model trained for one epoch."""
    folder = tmp_path_factory.mktemp("first")
    return train(parse_run_config(tiny_run(frames_file, folder, e0s, max_num_epochs=1))).model_path


def test_starts_from_the_files_weights_and_statistics(trained, test_frames_file, tmp_path):
    # other training data and other E0s: the statistics still come from the file
    config = parse_run_config(
        tiny_run(test_frames_file, tmp_path, {1: -1.0, 6: -2.0, 7: -3.0, 8: -4.0},
                 init_model=str(trained), valid_fraction=0.4)
    )  # fmt: skip
    _, state = trainer_module._set_up(config, None)
    saved = load_model(trained)
    assert state.model.config == saved.config
    got, want = state.model.state_dict(), saved.state_dict()
    assert got.keys() == want.keys()
    for key in want:
        assert torch.equal(got[key], want[key]), key


def test_a_run_from_a_model_trains_and_writes_its_own(trained, frames_file, e0s, tmp_path):
    config = parse_run_config(
        tiny_run(frames_file, tmp_path, e0s, init_model=str(trained), max_num_epochs=1)
    )
    result = train(config)
    assert "starting from the model" in (tmp_path / "train.log").read_text(encoding="utf-8")
    before, after = load_model(trained).state_dict(), load_model(result.model_path).state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    assert load_model(trained).config == load_model(result.model_path).config


def test_a_config_asking_for_another_model_is_refused(trained, frames_file, e0s, tmp_path):
    raw = tiny_run(frames_file, tmp_path, e0s, init_model=str(trained))
    raw["model"] = {**raw["model"], "num_channels": 8}
    with pytest.raises(ConfigError, match=r"num_channels: 4 in the file, 8 in the config"):
        trainer_module._set_up(parse_run_config(raw), None)
    raw["model"] = {"model": "visnet"}
    with pytest.raises(
        ConfigError, match="is a 'ictp' model, the config's model asks for 'visnet'"
    ):
        trainer_module._set_up(parse_run_config(raw), None)


def test_a_missing_model_file_is_named(frames_file, e0s, tmp_path):
    missing = tmp_path / "gone.model"
    config = parse_run_config(tiny_run(frames_file, tmp_path / "run", e0s, init_model=str(missing)))
    with pytest.raises(TensorPotError, match="gone.model"):
        trainer_module._set_up(config, None)
