"""Training streamed from a store (``tensorpot preprocess``) is training from the file: the
same statistics from one pass, the same split and batches, the same weights."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import yaml

from tensorpot.cli.main import main
from tensorpot.data import store as store_module
from tensorpot.data.configuration import Configuration
from tensorpot.data.dataset import GraphDataset
from tensorpot.data.readers import read_configurations
from tensorpot.data.statistics import fit_e0s_average, mean_per_atom_residual_and_force_rms
from tensorpot.data.stream_statistics import StreamStatistics
from tensorpot.training import train
from tensorpot.training.checkpoint import list_checkpoints, load_checkpoint
from tensorpot.training.preprocess import preprocess
from tests.training.conftest import DATA, tiny_run


def _mixed() -> list[Configuration]:
    """3BPA frames and small periodic copper and hydrogen cells (several compositions)."""
    frames = read_configurations(DATA / "train_300K.xyz", index=":6")
    rng = np.random.default_rng(0)
    for n in (2, 3, 4):
        numbers = np.array([29] * n + [1])
        positions = rng.uniform(0, 6, (n + 1, 3))
        frames.append(Configuration(numbers=numbers, positions=positions, cell=np.eye(3) * 6,
                                    pbc=np.ones(3, bool), energy=-3.0 * n + rng.normal(),
                                    forces=rng.normal(size=(n + 1, 3))))  # fmt: skip
    return frames


@pytest.mark.parametrize("mixed", [True, False])
def test_one_pass_gives_the_statistics_of_the_list(mixed):
    """E0s (their energies of every frame, as one composition fixes only their sum), shift,
    scale and neighbour count equal the list-based values, for several compositions and one."""
    frames = _mixed() if mixed else read_configurations(DATA / "train_300K.xyz", index=":5")
    dataset = GraphDataset(frames, 4.0)
    stats = StreamStatistics.of(dataset)
    zs = sorted({int(z) for c in frames for z in c.numbers})
    ours, theirs = stats.e0s("average", zs, []), fit_e0s_average(frames, zs)
    for config in frames:
        mine = sum(ours[int(z)] for z in config.numbers)
        assert mine == pytest.approx(sum(theirs[int(z)] for z in config.numbers), rel=1e-10)
    shift, scale = mean_per_atom_residual_and_force_rms(frames, theirs)
    assert stats.shift_and_scale(theirs) == pytest.approx((shift, scale), rel=1e-12)
    assert stats.average_num_neighbors() == dataset.average_num_neighbors()
    assert stats.label_counts() == dataset.label_counts()


def test_streamed_training_is_training_from_the_file(tmp_path, frames_file, e0s):
    """2 epochs with 2 loader workers: the split, statistics and weights of the file's run."""
    store = tmp_path / "train.lmdb"
    assert preprocess(tiny_run(frames_file, tmp_path / "x", e0s), store, chunk_frames=3) == 10
    memory = train(tiny_run(frames_file, tmp_path / "memory", e0s, max_num_epochs=2))
    streamed = train(tiny_run(store, tmp_path / "streamed", e0s, max_num_epochs=2,
                              num_workers=2))  # fmt: skip
    one = load_checkpoint(list_checkpoints(tmp_path / "memory" / "checkpoints")[-1][1])
    two = load_checkpoint(list_checkpoints(tmp_path / "streamed" / "checkpoints")[-1][1])
    for key in ("avg_num_neighbors", "atomic_inter_scale", "atomic_inter_shift", "E0s"):
        assert two["model_config"][key] == pytest.approx(one["model_config"][key], rel=1e-12)
    for name, value in one["model"].items():
        torch.testing.assert_close(two["model"][name], value, rtol=1e-10, atol=1e-12)
    assert streamed.error_tables["valid"] == pytest.approx(memory.error_tables["valid"], rel=1e-8)
    assert str(store.resolve()) not in [key[0] for key in store_module._OPEN]  # closed at the end


def test_preprocess_command(tmp_path, frames_file, e0s, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run(frames_file, tmp_path / "run", e0s)))
    out = tmp_path / "train.lmdb"
    assert main(["preprocess", str(config), "--out", str(out)]) == 0
    assert "wrote 10 structures" in capsys.readouterr().err
    assert main(["preprocess", str(config), "--out", str(out)]) == 2
    assert "a complete store is already there" in capsys.readouterr().err
    assert main(["preprocess", str(config), "--out", str(out), "model.r_max=5.0"]) == 2
    assert main(["train", str(config), f"train_file={out}", "model.r_max=3.0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "r_max is 3.0 Å: run tensorpot preprocess again" in err[-1]


def test_a_store_needs_the_store_extra(tmp_path, frames_file, e0s, capsys, monkeypatch):
    assert 'store = ["lmdb' in (DATA.parents[1] / "pyproject.toml").read_text()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_run(frames_file, tmp_path / "run", e0s)))
    monkeypatch.setitem(sys.modules, "lmdb", None)  # import lmdb -> ImportError
    assert main(["preprocess", str(config), "--out", str(tmp_path / "s.lmdb")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "the 'store' extra" in lines[0], lines


@pytest.mark.parametrize("train_is_store", [False, True])
def test_a_validation_store(tmp_path, frames_file, e0s, train_is_store):
    """A store as valid_file, beside a training file or store, capped by max_valid_frames."""
    store = tmp_path / "all.lmdb"
    preprocess(tiny_run(frames_file, tmp_path / "x", e0s), store)
    train_file = store if train_is_store else frames_file
    result = train(tiny_run(train_file, tmp_path / "run", e0s, valid_file=str(store),
                            max_valid_frames=4, max_num_epochs=1))  # fmt: skip
    log = (tmp_path / "run" / "train.log").read_text()
    assert "frames: 10 training, 4 validation" in log
    assert result.error_tables["valid"]["forces_rmse"] > 0
