"""An on-disk store of graphs (LMDB): configurations with their neighbour lists and labels,
read one at a time, so training memory does not grow with the data set.

``tensorpot preprocess`` writes one with :func:`write_store`; a run whose ``train_file`` (or
``valid_file``) is a store streams its batches from it (:class:`GraphStore`). Layout of the
LMDB file (one file, ``subdir=False``):

- ``b"meta"``: JSON ``{"format": "tensorpot-store", "format_version", "cutoff", "count",
  "complete", "sources", "keys"}``; ``count`` is the number of records, updated in the
  transaction that adds them, so a store whose writer was killed holds exactly ``count``
  whole records and ``complete: false``, and the same command continues it.
- ``b"%012d" % i``: record ``i``: a CRC-32 of the rest, the length of a JSON header, the header
  (scalars, and the name, dtype and shape of every array) and the arrays' raw bytes.

A record that fails its CRC, a header that does not parse, or an LMDB file that cannot be
opened (truncated, not LMDB) is a :class:`~tensorpot.errors.DataError` naming the store and
the record. A store of another format version or cutoff is refused with one line.
"""

from __future__ import annotations

import copy
import json
import math
import os
import struct
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tensorpot.data.atoms import AtomicGraph, graph_from_arrays
from tensorpot.data.configuration import Configuration, Properties
from tensorpot.data.dataset import Sample
from tensorpot.data.statistics import is_isolated_atom, label_counts
from tensorpot.errors import DataError, TensorPotError

__all__ = [
    "STORE_FORMAT", "STORE_VERSION", "GraphStore", "check_store", "is_store", "read_meta",
    "write_store",
]  # fmt: skip

STORE_FORMAT = "tensorpot-store"
STORE_VERSION = 1
#: Largest size the store may grow to (virtual address space only; the file grows as written).
_MAP_SIZE = 1 << 40
_META = b"meta"
_OPTIONAL = ("energy", "forces", "stress", "virials", "dipole", "polarizability")
_CHUNK = 1000  # records per write transaction


def _key(index: int) -> bytes:
    return b"%012d" % index


def _lmdb() -> Any:
    try:
        import lmdb
    except ImportError:  # the store extra is not installed
        raise TensorPotError(
            "a data store (.lmdb) needs lmdb, the 'store' extra: pip install -c constraints.txt "
            "-e '.[store]'"
        ) from None
    return lmdb


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a store (by its suffix ``.lmdb``)."""
    return Path(path).suffix.lower() == ".lmdb"


def encode_sample(sample: Sample) -> bytes:
    """One record: CRC-32, header length, JSON header, raw arrays (see the module docs)."""
    config, graph = sample.config, sample.graph
    arrays = {
        "numbers": graph.atomic_numbers.astype(np.int16),
        "positions": graph.positions,
        "cell": config.cell,
        "pbc": graph.pbc,
        "edge_index": graph.edge_index.astype(np.int32),
        "cell_shifts": graph.cell_shifts.astype(np.int8),
    }
    scalars: dict[str, Any] = {
        "config_type": config.config_type, "weight": config.weight,
        "source": list(config.source), "properties": dict(config.properties),
        "total_charge": config.total_charge,
    }  # fmt: skip
    for name in _OPTIONAL:
        value = getattr(config, name)
        if isinstance(value, np.ndarray):
            arrays[name] = value
        else:
            scalars[name] = value
    if np.abs(graph.cell_shifts).max(initial=0) > 127:
        arrays["cell_shifts"] = graph.cell_shifts
    layout = [(name, str(a.dtype), list(a.shape)) for name, a in arrays.items()]
    header = json.dumps({"scalars": scalars, "arrays": layout}).encode()
    body = struct.pack("<I", len(header)) + header
    body += b"".join(np.ascontiguousarray(a).tobytes() for a in arrays.values())
    return struct.pack("<I", zlib.crc32(body)) + body


def decode_sample(record: bytes, cutoff: float, where: tuple[str, int]) -> Sample:
    """The sample of one record; DataError (naming the store and record) if it is damaged."""
    file, index = where
    if len(record) < 8 or struct.unpack_from("<I", record)[0] != zlib.crc32(record[4:]):
        raise DataError(f"record {index} is damaged (checksum mismatch)", file)
    try:
        size = struct.unpack_from("<I", record, 4)[0]
        header = json.loads(record[8 : 8 + size])
        offset, arrays = 8 + size, {}
        for name, dtype, shape in header["arrays"]:
            count = math.prod(shape)
            array = np.frombuffer(record, dtype=dtype, count=count, offset=offset)
            arrays[name] = array.reshape(shape)
            offset += array.nbytes
        scalars = header["scalars"]
    except (ValueError, KeyError, TypeError, struct.error) as err:
        raise DataError(f"record {index} is damaged ({err})", file) from None
    labels = {name: arrays.get(name, scalars.get(name)) for name in _OPTIONAL}
    config = Configuration(
        numbers=arrays["numbers"].astype(np.int64), positions=arrays["positions"],
        cell=arrays["cell"], pbc=arrays["pbc"], config_type=scalars["config_type"],
        weight=scalars["weight"], source=tuple(scalars["source"]),
        properties=Properties(scalars["properties"]), total_charge=scalars["total_charge"],
        **labels,
    )  # fmt: skip
    graph = AtomicGraph(
        config.positions.copy(), config.numbers.copy(), arrays["edge_index"].astype(np.int64),
        arrays["cell_shifts"].astype(np.int64), np.array(arrays["cell"]),
        np.array(arrays["pbc"], dtype=bool),
    )  # fmt: skip
    if not config.pbc.any():
        graph = AtomicGraph(graph.positions, graph.atomic_numbers, graph.edge_index,
                            graph.cell_shifts, np.zeros((3, 3)), graph.pbc)  # fmt: skip
    return Sample(config, graph)


def _open(path: Path, write: bool) -> Any:
    """The LMDB environment of ``path``; a file shorter than the pages its header says it
    uses (truncated: reading there would crash the process) is a DataError."""
    lmdb = _lmdb()
    try:
        if write:
            env = lmdb.open(str(path), subdir=False, map_size=_MAP_SIZE, max_dbs=0)
        else:
            env = lmdb.open(str(path), subdir=False, readonly=True, lock=False, readahead=False,
                            map_size=_MAP_SIZE)  # fmt: skip
        used = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    except lmdb.Error as err:
        raise DataError(f"not a readable store ({' '.join(str(err).split())})", str(path)) from None
    size = path.stat().st_size
    if used > size:
        env.close()
        raise DataError(
            f"truncated store: {size} bytes, its pages need {used} (an incomplete copy?)",
            str(path),
        )
    return env


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The store's metadata; DataError for a file that is no store or a damaged one."""
    path = Path(path)
    if not path.is_file():
        raise DataError("store not found", str(path))
    try:
        with _reader(path).begin() as txn:
            raw = txn.get(_META)
    except _lmdb().Error as err:
        raise DataError(f"not a readable store ({' '.join(str(err).split())})", str(path)) from None
    try:
        meta = json.loads(raw) if raw is not None else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != STORE_FORMAT:
        raise DataError("not a tensorpot data store (no metadata)", str(path))
    return meta


def check_store(path: str | os.PathLike, cutoff: float) -> dict[str, Any]:
    """The metadata of a complete store of this format version and ``cutoff`` (Å).

    Raises:
        DataError: one line for another format version, another cutoff, or a store whose
            ``preprocess`` did not finish.
    """
    meta = read_meta(path)
    file = str(path)
    if meta.get("format_version") != STORE_VERSION:
        raise DataError(
            f"store format version {meta.get('format_version')}, this tensorpot reads version "
            f"{STORE_VERSION}: run tensorpot preprocess again", file
        )  # fmt: skip
    if abs(float(meta["cutoff"]) - float(cutoff)) > 1e-12:
        raise DataError(
            f"store built with cutoff {meta['cutoff']} Å, the model's r_max is {cutoff} Å: run "
            "tensorpot preprocess again with this r_max", file
        )  # fmt: skip
    if not meta.get("complete"):
        raise DataError(
            f"incomplete store ({meta.get('count', 0)} records): its tensorpot preprocess did "
            "not finish; run the same command again to complete it", file
        )  # fmt: skip
    return meta


#: The read environments open in this process, by (resolved path, process id), with the
#: number of reads through each: LMDB allows one open environment per file and process, so
#: every reader of a file shares it.
_OPEN: dict[tuple[str, int], list] = {}
#: Reads after which the environment is opened afresh: the pages of the file that LMDB has
#: mapped are then unmapped, so the resident memory of a pass over a large store stays that of
#: this many reads (the pages stay in the page cache). A read may map more than its record:
#: the kernel maps up to 64 kB around a page fault of a file mapping ("fault-around").
_REOPEN_READS = 512


def _reader(path: Path, resolved: str | None = None) -> Any:
    """This process's read environment of ``path`` (``resolved``: its resolved form, if known),
    opened on first use."""
    key = (resolved or str(path.resolve()), os.getpid())
    entry = _OPEN.get(key)
    if entry is not None and entry[1] >= _REOPEN_READS:
        entry[0].close()
        entry = None
    if entry is None:
        entry = _OPEN[key] = [_open(path, write=False), 0]
    entry[1] += 1
    return entry[0]


def close_store(path: str | os.PathLike) -> None:
    """Close this process's read environment of ``path`` (opened again on the next read);
    done before worker processes start, since a forked process cannot open a file whose
    environment was open in its parent."""
    entry = _OPEN.pop((str(Path(path).resolve()), os.getpid()), None)
    if entry is not None:
        entry[0].close()


class GraphStore(Sequence[Sample]):
    """The samples of a store, or of the records ``indices`` of it, read when asked for.

    The LMDB environment is opened lazily in each process; it is closed (:meth:`close`)
    before :func:`~tensorpot.data.dataset.iterate_batches` starts worker processes, which open
    their own. Nothing of the data set is kept
    in memory besides ``indices``.
    """

    def __init__(
        self, path: str | os.PathLike, cutoff: float, indices: Sequence[int] | None = None
    ):
        self.path = Path(path)
        self.cutoff = float(cutoff)
        self.meta = check_store(self.path, cutoff)
        self._resolved = str(self.path.resolve())
        count = int(self.meta["count"])
        self.indices = np.arange(count) if indices is None else np.asarray(indices, np.int64)

    def subset(self, indices: Sequence[int]) -> GraphStore:
        """The store restricted to ``indices`` (positions in this one)."""
        part = copy.copy(self)
        part.indices = self.indices[np.asarray(indices, np.int64)]
        return part

    def __len__(self) -> int:
        return len(self.indices)

    #: read by worker processes when :func:`~tensorpot.data.dataset.iterate_batches` has some
    streamed = True

    def close(self) -> None:
        """Close this process's environment of the store (opened again on the next read)."""
        close_store(self.path)

    def __getitem__(self, index):  # type: ignore[override]
        record = int(self.indices[index])
        try:
            with _reader(self.path, self._resolved).begin(buffers=False) as txn:
                raw = txn.get(_key(record))
        except _lmdb().Error as err:
            raise DataError(f"record {record} cannot be read ({err})", str(self.path)) from None
        if raw is None:
            raise DataError(f"record {record} is missing", str(self.path))
        return decode_sample(raw, self.cutoff, (str(self.path), record))

    def __iter__(self) -> Iterator[Sample]:
        for k in range(len(self)):
            yield self[k]

    def label_counts(self) -> dict[str, int]:
        """How many structures of the whole store carry each label (counted when written)."""
        return dict(self.meta["label_counts"])

    def elements(self) -> list[int]:
        """The atomic numbers in the whole store."""
        return [int(z) for z in self.meta["elements"]]


def write_store(
    path: str | os.PathLike,
    chunks: Iterable[list[Configuration]],
    cutoff: float,
    description: dict[str, Any],
) -> int:
    """Write (or continue) the store ``path`` from ``chunks`` of configurations.

    ``description`` (sources and reader keys, plain JSON) must equal that of an incomplete
    store at ``path``, whose first ``count`` configurations are then skipped; the store is
    marked complete at the end. Returns the number of records.

    Raises:
        DataError: ``path`` holds a complete store, or an incomplete one of other settings.
    """
    path = Path(path)
    meta = {"format": STORE_FORMAT, "format_version": STORE_VERSION, "cutoff": float(cutoff),
            "count": 0, "complete": False, **description}  # fmt: skip
    grown = {"count": 0, "complete": False, "isolated": [], "elements": [], "label_counts": {}}
    if path.exists():
        old = read_meta(path)
        close_store(path)
        if old.get("complete"):
            raise DataError("a complete store is already there; choose another --out", str(path))
        settings = {k: v for k, v in meta.items() if k not in grown}
        if {k: old.get(k) for k in settings} != settings:
            raise DataError(
                "an incomplete store of other settings (sources, keys or cutoff) is there; "
                "remove it or choose another --out", str(path)
            )  # fmt: skip
        meta.update({k: old.get(k, v) for k, v in grown.items()})
    else:
        meta.update(grown)
    env = _open(path, write=True)
    try:
        seen, pending = 0, []
        for chunk in chunks:
            for config in chunk:
                seen += 1
                if seen <= meta["count"]:
                    continue
                pending.append(config)
                if len(pending) == _CHUNK:
                    _commit(env, pending, meta, cutoff)
                    pending = []
        _commit(env, pending, meta, cutoff, complete=True)
    finally:
        env.close()
    return int(meta["count"])


def _commit(
    env: Any, configs: list[Configuration], meta: dict, cutoff: float, complete: bool = False
) -> None:
    """Add ``configs`` as the next records and the new count in one transaction."""
    records = []
    for config in configs:
        graph = graph_from_arrays(config.positions, config.numbers, config.cell, config.pbc, cutoff)
        records.append(encode_sample(Sample(config, graph)))
    counts = meta["label_counts"]
    for k, config in enumerate(configs):
        if is_isolated_atom(config):
            meta["isolated"].append(meta["count"] + k)
        for name, number in label_counts([config]).items():
            counts[name] = counts.get(name, 0) + number
    elements = {int(z) for c in configs for z in c.numbers}
    meta["elements"] = sorted(elements.union(meta["elements"]))
    with env.begin(write=True) as txn:
        for k, record in enumerate(records):
            txn.put(_key(meta["count"] + k), record)
        meta["count"] += len(records)
        meta["complete"] = complete
        txn.put(_META, json.dumps(meta).encode())
