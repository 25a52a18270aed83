"""The on-disk store: what is written is read back, batches streamed by workers are the
in-memory batches, and damaged, truncated, incomplete or foreign stores are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch

from tensorpot.data import store as store_module
from tensorpot.data.atoms import graph_from_arrays
from tensorpot.data.configuration import Configuration
from tensorpot.data.dataset import GraphDataset, iterate_batches
from tensorpot.data.readers import read_configurations
from tensorpot.data.store import GraphStore, write_store
from tensorpot.errors import DataError

DATA = Path(__file__).parents[2] / "data" / "3bpa" / "train_300K.xyz"
CUTOFF = 4.0


@pytest.fixture(scope="module")
def configs() -> list[Configuration]:
    frames = read_configurations(DATA, index=":12")
    periodic = Configuration(  # a periodic cell with stress, a property and a charge
        numbers=np.array([29, 29]), positions=np.array([[0.0, 0.0, 0.0], [1.8, 1.8, 0.0]]),
        cell=np.eye(3) * 3.6, pbc=np.array([True, True, True]), energy=-1.5,
        forces=np.array([[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]]), stress=np.eye(3) * 0.01,
        properties={"gap": 1.25}, total_charge=1.0, config_type="bulk", weight=2.0,
        source=("cu.xyz", 3),
    )  # fmt: skip
    return [*frames, periodic]


def _write(path: Path, configs: list[Configuration], cutoff: float = CUTOFF) -> Path:
    write_store(path, [configs[:5], configs[5:]], cutoff, {"sources": [], "keys": {}})
    return path


def test_every_sample_reads_back_as_written(tmp_path, configs):
    store = GraphStore(_write(tmp_path / "s.lmdb", configs), CUTOFF)
    assert len(store) == len(configs)
    for config, sample in zip(configs, store, strict=True):
        got = sample.config
        for name in ("numbers", "positions", "cell", "pbc", "forces", "stress", "virials"):
            want = getattr(config, name)
            assert (want is None and getattr(got, name) is None) or np.array_equal(
                getattr(got, name), want
            ), name
        assert (got.energy, got.weight, got.total_charge, got.config_type, got.source) == (
            config.energy, config.weight, config.total_charge, config.config_type, config.source
        )  # fmt: skip
        assert dict(got.properties) == dict(config.properties)
        graph = graph_from_arrays(config.positions, config.numbers, config.cell, config.pbc, CUTOFF)
        for name in ("edge_index", "cell_shifts", "cell", "pbc", "positions", "atomic_numbers"):
            assert np.array_equal(getattr(sample.graph, name), getattr(graph, name)), name
            assert getattr(sample.graph, name).dtype == getattr(graph, name).dtype, name
    assert store.label_counts()["property:gap"] == 1
    assert store.elements() == [1, 6, 7, 8, 29]


def test_workers_stream_the_in_memory_batches(tmp_path, configs):
    """Shuffled, 2 workers, the share of rank 1 of 2: the same batches as from memory."""
    store = GraphStore(_write(tmp_path / "s.lmdb", configs), CUTOFF)
    memory = GraphDataset(configs, CUTOFF)
    for rank in (0, 1):
        kwargs = {"rank": rank, "world_size": 2}
        streamed = list(iterate_batches(store, 5, True, torch.Generator().manual_seed(3),
                                       num_workers=2, **kwargs))  # fmt: skip
        direct = list(iterate_batches(memory, 5, True, torch.Generator().manual_seed(3), **kwargs))
        assert len(streamed) == len(direct) == 3
        for a, b in zip(streamed, direct, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                for x, y in zip(a[0], b[0], strict=True):
                    assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
                torch.testing.assert_close(a[1].forces, b[1].forces, rtol=0, atol=0)
                torch.testing.assert_close(a[1].energy, b[1].energy, rtol=0, atol=0)


def test_a_store_of_another_cutoff_or_version_is_refused(tmp_path, configs):
    path = _write(tmp_path / "s.lmdb", configs[:3])
    with pytest.raises(DataError, match=r"s\.lmdb: store built with cutoff 4\.0 Å.*r_max is 5\.0"):
        GraphStore(path, 5.0)
    store_module.close_store(path)
    env = lmdb.open(str(path), subdir=False)
    with env.begin(write=True) as txn:
        meta = json.loads(txn.get(b"meta"))
        txn.put(b"meta", json.dumps({**meta, "format_version": 99}).encode())
    env.close()
    with pytest.raises(DataError, match="store format version 99, this tensorpot reads") as err:
        GraphStore(path, CUTOFF)
    assert "\n" not in str(err.value)


def test_a_damaged_record_is_named(tmp_path, configs):
    path = _write(tmp_path / "s.lmdb", configs)
    raw = bytearray(path.read_bytes())
    at = raw.find(configs[7].positions.tobytes())
    assert at > 0
    raw[at + 3] ^= 0xFF
    path.write_bytes(bytes(raw))
    store = GraphStore(path, CUTOFF)
    store[6]  # the records around it are whole
    with pytest.raises(DataError, match=r"s\.lmdb: record 7 is damaged \(checksum mismatch\)"):
        store[7]
    with pytest.raises(DataError) as err:  # met by a worker process: the same one line
        list(iterate_batches(store, 4, num_workers=2))
    assert str(err.value).endswith("s.lmdb: record 7 is damaged (checksum mismatch)")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("size", [100, 20000])
def test_a_truncated_store_is_refused(tmp_path, configs, size):
    path = _write(tmp_path / "s.lmdb", configs)
    with open(path, "r+b") as handle:
        handle.truncate(size)
    with pytest.raises(DataError, match=r"s\.lmdb: (truncated store|not a readable store)"):
        GraphStore(path, CUTOFF)


def test_an_interrupted_write_is_refused_then_completed(tmp_path, configs, monkeypatch):
    """Killed after 2 transactions of 3 records: the store holds 6 whole records and says it is
    incomplete; the same write continues it into the store written in one go."""
    monkeypatch.setattr(store_module, "_CHUNK", 3)
    path = tmp_path / "s.lmdb"

    def stopping():
        yield configs[:7]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_store(path, stopping(), CUTOFF, {"sources": [], "keys": {}})
    with pytest.raises(DataError, match=r"incomplete store \(6 records\).*run the same command"):
        GraphStore(path, CUTOFF)
    with pytest.raises(DataError, match="incomplete store of other settings"):
        write_store(path, [configs], CUTOFF, {"sources": ["other"], "keys": {}})
    assert write_store(path, [configs[:4], configs[4:]], CUTOFF, {"sources": [], "keys": {}}) == 13
    whole = GraphStore(_write(tmp_path / "whole.lmdb", configs), CUTOFF)
    resumed = GraphStore(path, CUTOFF)
    for a, b in zip(resumed, whole, strict=True):
        assert np.array_equal(a.config.positions, b.config.positions)
    with pytest.raises(DataError, match="a complete store is already there"):
        _write(path, configs)


def test_reading_on_after_the_environment_is_reopened(tmp_path, configs, monkeypatch):
    """The environment is opened afresh every 3 reads here: every record still reads back."""
    monkeypatch.setattr(store_module, "_REOPEN_READS", 3)
    store = GraphStore(_write(tmp_path / "s.lmdb", configs), CUTOFF)
    for config, sample in zip(configs, store, strict=True):
        assert np.array_equal(sample.config.positions, config.positions)
