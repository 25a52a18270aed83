"""Checkpoints: atomic writes, weights_only loading, RNG states, keeping only the newest."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tensorpot.errors import TensorPotError
from tensorpot.training import checkpoint as ckpt


def test_round_trip_with_weights_only(tmp_path):
    state = {"epoch": 3, "model": {"w": torch.arange(4.0)}, "best_valid_loss": float("inf")}
    path = ckpt.save_checkpoint(tmp_path / "a.pt", {**state, "rng": ckpt.get_rng_state()})
    loaded = ckpt.load_checkpoint(path)
    assert loaded["epoch"] == 3 and loaded["best_valid_loss"] == float("inf")
    torch.testing.assert_close(loaded["model"]["w"], state["model"]["w"])
    # plain torch.load with the safe unpickler accepts it too
    torch.load(path, weights_only=True)


def test_failing_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = ckpt.save_checkpoint(tmp_path / "c.pt", {"epoch": 1, "w": torch.ones(3)})
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(path, {"epoch": 2, "w": torch.zeros(3)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert ckpt.load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no temporary file left


def test_rng_state_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002 (the legacy global state is what is saved)
    torch.manual_seed(3)
    path = ckpt.save_checkpoint(tmp_path / "r.pt", {"rng": ckpt.get_rng_state()})
    first = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    random.seed(9)
    np.random.seed(9)  # noqa: NPY002
    torch.manual_seed(9)
    ckpt.set_rng_state(ckpt.load_checkpoint(path)["rng"])
    again = (random.random(), np.random.rand(), torch.rand(2))  # noqa: NPY002
    assert first[0] == again[0] and first[1] == again[1]
    assert torch.equal(first[2], again[2])


def test_newest_checkpoint_and_pruning(tmp_path):
    for epoch in (2, 10, 4):
        ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, "m", epoch), {"epoch": epoch})
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    newest = ckpt.latest_checkpoint(tmp_path)
    assert newest == ckpt.checkpoint_path(tmp_path, "m", 10)
    ckpt.prune_checkpoints(tmp_path, keep=newest)
    assert [p for _, p in ckpt.list_checkpoints(tmp_path)] == [newest]
    assert (tmp_path / "notes.txt").exists()
    assert ckpt.latest_checkpoint(tmp_path / "missing") is None


def test_rejects_files_that_are_not_checkpoints(tmp_path):
    torch.save({"format": "something-else"}, tmp_path / "x.pt")
    with pytest.raises(TensorPotError, match="not a tensorpot checkpoint"):
        ckpt.load_checkpoint(tmp_path / "x.pt")
    (tmp_path / "y.pt").write_bytes(b"not a torch file")
    with pytest.raises(TensorPotError, match="not a loadable checkpoint"):
        ckpt.load_checkpoint(tmp_path / "y.pt")
    with pytest.raises(TensorPotError, match="no such checkpoint"):
        ckpt.load_checkpoint(tmp_path / "z.pt")
